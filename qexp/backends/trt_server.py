"""A long-lived TensorRT worker per qexp process (``backend.persistent_worker=true``).

The worker started with ``--serve`` reads one request path per line on its stdin and answers
``done <response path>`` on its stdout, so the engines of all jobs a process runs (with
hydra/launcher=local_gpus: all jobs of one GPU) are built in one TensorRT process that keeps one
in-memory timing cache. A worker that crashes, hangs past the job's timeout, or fails a request
is discarded (its whole process group killed) and the next job starts a fresh one: a bad build
costs one job, never the sweep.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import subprocess
import time
from pathlib import Path

_SERVERS: dict[tuple[str, tuple[tuple[str, str], ...]], WorkerServer] = {}


class WorkerGone(RuntimeError):
    """The worker died or timed out before answering (the message says which)."""


class WorkerServer:
    def __init__(self, exe: str, env: dict[str, str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [exe, "-m", "qexp.trt.worker", "--serve"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own group: a kill takes every child with it
        )
        self.requests = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, req_path: Path, timeout: float) -> Path:
        """Send one request; return its response path once the worker says it is written."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"{req_path}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WorkerGone(f"the TensorRT worker is gone ({e})") from None
        self.requests += 1
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise WorkerGone(f"timed out after {timeout:.0f} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 5.0))
            if not ready:
                if not self.alive():
                    raise WorkerGone(f"exited with status {self.proc.returncode}")
                continue
            line = self.proc.stdout.readline()
            if not line:  # end of output: the worker died (segfault, OOM kill, ...)
                self.proc.wait(timeout=30)
                raise WorkerGone(f"exited with status {self.proc.returncode}")
            if line.startswith("done "):
                return Path(line[5:].strip())

    def close(self) -> None:
        if self.alive():
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # a clean end: the worker exits at end of input
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._log.close()


def server_for(exe: str, env: dict[str, str], log_dir: Path) -> WorkerServer:
    """The process's worker for this interpreter and environment (started on first use)."""
    key = (exe, tuple(sorted(env.items())))
    srv = _SERVERS.get(key)
    if srv is None or not srv.alive():
        srv = WorkerServer(exe, env, log_dir / f"trt-worker-{os.getpid()}.log")
        _SERVERS[key] = srv
    return srv


def discard(srv: WorkerServer) -> None:
    """Stop ``srv`` and forget it (after a failure: CUDA errors can be sticky)."""
    for key, s in list(_SERVERS.items()):
        if s is srv:
            del _SERVERS[key]
    srv.close()


@atexit.register
def close_all() -> None:
    for srv in list(_SERVERS.values()):
        discard(srv)
