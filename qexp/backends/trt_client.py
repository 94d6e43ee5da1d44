"""The client side of the TensorRT worker process: its interpreter and environment, the probe
of what that interpreter has, and one request sent to a worker (the process's serving one,
:mod:`qexp.backends.trt_server`, or a fresh process) with its failure as a TensorRTError."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from qexp.backends import trt_server
from qexp.trt import protocol
from qexp.trt.worker import response_path

REPO_ROOT = Path(__file__).resolve().parents[2]  # holds the qexp package the worker imports


class TensorRTError(RuntimeError):
    """The worker failed; the message carries its error and TensorRT's log tail."""


def worker_env(bcfg: Any) -> tuple[str, dict[str, str]]:
    """(interpreter, environment) for the worker process."""
    python = bcfg.python or sys.executable
    env = dict(os.environ)
    if getattr(bcfg, "lazy_loading", False):
        # TensorRT 8.6 links CUDA 12.0's runtime, which loads every kernel of a module eagerly
        env.setdefault("CUDA_MODULE_LOADING", "LAZY")
    jit = getattr(bcfg, "jit_cache", None)
    if jit:
        # kernels the driver compiles from PTX are kept for every later build (all GPUs and
        # processes of the host); 4 GiB is the driver's maximum, its default is far smaller
        env["CUDA_CACHE_PATH"] = str(Path(jit).resolve())
        env.setdefault("CUDA_CACHE_MAXSIZE", str(4 << 30))
    paths = [p for p in str(bcfg.pythonpath or "").split(os.pathsep) if p] + [str(REPO_ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    ld = [p for p in str(bcfg.ld_library_path or "").split(os.pathsep) if p]
    if env.get("LD_LIBRARY_PATH"):
        ld.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
    env["PYTHONUNBUFFERED"] = "1"
    return python, env


@functools.cache
def probe(python: str, pythonpath: str, ld_library_path: str) -> dict[str, Any]:
    """Ask the worker interpreter what it has (once per process per interpreter)."""
    bcfg = SimpleNamespace(python=python, pythonpath=pythonpath, ld_library_path=ld_library_path)
    exe, env = worker_env(bcfg)
    try:
        out = subprocess.run(
            [exe, "-m", "qexp.trt.worker", "--probe"],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        return {"ok": False, "error": f"cannot start {exe}: {e}"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {
            "ok": False,
            "error": f"{exe} -m qexp.trt.worker --probe failed: {' | '.join(tail)}",
        }
    return json.loads(lines[-1])


def probe_cfg(bcfg: Any) -> dict[str, Any]:
    return probe(
        str(bcfg.python or sys.executable),
        str(bcfg.pythonpath or ""),
        str(bcfg.ld_library_path or ""),
    )


def call_worker(
    bcfg: Any, req: protocol.Request, req_path: Path, timeout: int
) -> protocol.Response:
    """Run the worker on ``req`` (the process's long-lived one with
    ``backend.persistent_worker``, else a fresh process); raise TensorRTError with the log tail
    when it fails."""
    protocol.write(req, str(req_path))
    resp_path = Path(response_path(str(req_path)))
    resp_path.unlink(missing_ok=True)
    exe, env = worker_env(bcfg)
    log_path = req_path.with_name("worker.log")
    log_path.unlink(missing_ok=True)
    why = ""
    if bool(getattr(bcfg, "persistent_worker", False)):
        cache = Path(str(bcfg.timing_cache)).parent if bcfg.timing_cache else req_path.parent
        srv = trt_server.server_for(exe, env, cache)
        try:
            srv.submit(req_path.resolve(), timeout)
        except trt_server.WorkerGone as e:
            trt_server.discard(srv)
            why = f"{e}; its log: {srv.log_path}"
    else:
        with open(log_path, "w") as logf:
            try:
                proc = subprocess.run(
                    [exe, "-m", "qexp.trt.worker", str(req_path)],
                    env=env, stdout=logf, stderr=subprocess.STDOUT, timeout=timeout,
                )  # fmt: skip
                why = f"exited with status {proc.returncode}"
            except subprocess.TimeoutExpired:
                why = f"timed out after {timeout} s"
    tail = ""
    if log_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
    if not resp_path.exists():
        raise TensorRTError(
            f"TensorRT worker {why or 'ended'} without a response\n--- worker log tail ---\n{tail}"
        )
    resp = protocol.read(protocol.Response, str(resp_path))
    if not resp.ok:
        # keep a serving worker (and its timing cache) when TensorRT refused a network; drop it
        # after anything else, which may have left its CUDA context in an error state
        benign = resp.unsupported or (resp.error or "").startswith(
            ("BuildError:", "ProtocolError:", "FileNotFoundError:")
        )
        if not benign:
            trt_server.close_all()
        trt_tail = "\n".join(resp.log_tail) or tail
        raise TensorRTError(f"{resp.error}\n--- TensorRT log tail ---\n{trt_tail}")
    return resp
