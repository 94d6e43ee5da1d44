"""backend=tensorrt: build and measure TensorRT engines through the worker in qexp/trt/.

The worker runs under ``backend.python`` (default $TRT_PYTHON, else this interpreter) with
``backend.pythonpath`` / ``backend.ld_library_path`` ($TRT_PYTHONPATH, $TRT_LD_LIBRARY_PATH), so
the TensorRT build may live in another Python than qexp's. This client stages the ONNX (with a
dynamic batch axis), the eval and calibration images as .npy, sends one request, and scores the
raw outputs it gets back with the shared eval pipeline.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from qexp.backends import trt_precheck, trt_server
from qexp.backends import trt_stage as stage
from qexp.cache import file_hash
from qexp.config.schema import BackendConfig, OptionError, added, bounded
from qexp.config.settings import Settings
from qexp.contracts import PRECISIONS, ROUTES, Accepts, Choice, Output, Route
from qexp.interfaces import Deployable, EvalData
from qexp.job import Job
from qexp.registry import BACKENDS
from qexp.trt import engine_info, protocol
from qexp.trt.compat import unsupported_reason

log = logging.getLogger("qexp")
REPO_ROOT = Path(__file__).resolve().parents[2]  # holds the qexp package the worker imports


class FormatFilter(Choice):
    # fp16/int8 builds don't time fp32 implementations where others exist (most of a build is
    # timing reformats between fp32 and fp16 formats)
    no_fp32 = "no_fp32"


class PrecheckMode(Choice):
    """What the pre-build check of a Q/DQ graph does when TensorRT's optimizer refuses it."""

    off = "off"  # no check: a refused graph fails inside the build
    fail = "fail"  # fail the job in seconds, naming the refused pairs and the ignore patterns
    drop = "drop"  # build without the refused pairs (those layers float) and record them


class TrtLogLevel(Choice):
    error = "error"
    warning = "warning"
    info = "info"
    verbose = "verbose"


@dataclass
class TensorRTBackendConfig(BackendConfig):
    name: str = "tensorrt"
    python: str | None = "${oc.env:TRT_PYTHON,null}"  # null: this interpreter
    pythonpath: str = "${oc.env:TRT_PYTHONPATH,''}"
    ld_library_path: str = "${oc.env:TRT_LD_LIBRARY_PATH,''}"
    workspace_gb: float = bounded(4.0, gt=0)
    # builder optimisation level 0..5 (TensorRT >= 8.6); 3 is TensorRT's default, see
    # docs/results/tensorrt-build.md for what 2 saves in build time and costs in speed
    opt_level: int = bounded(2, ge=0, le=5)
    # TacticSource names to enable (null: TensorRT's default set, which on 8.6 includes cuBLAS
    # and cuDNN); see docs/tensorrt.md for what each costs in build time
    tactic_sources: list[str] | None = None
    avg_timing_iterations: int | None = bounded(None, ge=1)  # null: TensorRT's default
    format_filter: FormatFilter | None = FormatFilter.no_fp32  # null: the full search
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    eval_batch: int = 1  # one of batch_sizes
    eval_all_batches: bool = True  # mAP at every batch size (the batch-consistency check)
    warmup: int = bounded(50, ge=0)
    iters: int = bounded(200, ge=1)
    cuda_graph: bool = True  # time CUDA-graph launches: no host launch gaps in the numbers
    latency_lock: bool = True  # one job at a time on the host times latency
    fp16_fallback: bool = True  # INT8 engines may also use fp16 kernels (trtexec --int8 --fp16)
    profile_iters: int = bounded(20, ge=0)  # per-layer profile runs (0: none)
    timing_cache: str | None = "${paths.cache_dir}/tensorrt/timing.cache"
    persistent_worker: bool = True  # one worker per qexp process: builds share a timing cache
    lazy_loading: bool = True  # CUDA_MODULE_LOADING=LAZY for the worker
    jit_cache: str | None = "${paths.cache_dir}/cuda_jit"  # the driver's JIT cache (null: its own)
    build_profile: bool = True  # build_profile.json: where the build time went
    reuse_engine: bool = True  # a cached engine with the same inputs is not rebuilt
    calib_num: int | None = bounded(
        None, ge=1
    )  # trt_builtin: calibration images (null: data.calib.num)
    calib_batch: int = bounded(1, ge=1)  # trt_builtin: images per calibration batch
    tf32: bool = False  # fp32 layers as IEEE fp32 (TensorRT enables TF32 unless told not to)
    timeout_s: int = bounded(3600, ge=1)
    log_level: TrtLogLevel = TrtLogLevel.warning
    # Q/DQ graphs: TensorRT's optimizer is asked first (seconds, qexp/backends/trt_precheck.py)
    precheck: PrecheckMode = added(PrecheckMode.fail)

    def rules(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise OptionError("batch_sizes", self.batch_sizes, "a non-empty list of sizes >= 1")
        if self.eval_batch not in self.batch_sizes:
            raise OptionError(
                "eval_batch", self.eval_batch, f"must be one of batch_sizes {self.batch_sizes}"
            )
        unknown = sorted(set(self.tactic_sources or []) - set(protocol.TACTIC_SOURCES))
        if unknown:
            raise OptionError("tactic_sources", self.tactic_sources,
                              f"unknown {unknown}; known: {', '.join(protocol.TACTIC_SOURCES)}")  # fmt: skip


class TensorRTError(RuntimeError):
    """The worker failed; the message carries its error and TensorRT's log tail."""


# The request fields that describe the job, not a backend option (worker_request sets them);
# every other field of protocol.Request is the backend option of the same name.
JOB_FIELDS = ("onnx", "engine", "out_dir", "precision", "route", "calibrator", "calib_dir",
              "calib_cache", "dynamic_range", "eval_input", "timing_cache", "latency_lock",
              "batch_sizes")  # fmt: skip


def worker_request(b: TensorRTBackendConfig, **job: Any) -> protocol.Request:
    """The worker's request: the job's own fields (``JOB_FIELDS``), and every other field of
    the protocol from the backend option of the same name (choices as plain strings)."""
    if set(job) != set(JOB_FIELDS):
        raise TypeError(f"worker_request: job fields {sorted(set(job) ^ set(JOB_FIELDS))}")
    options = {
        f.name: _plain(getattr(b, f.name))
        for f in dataclasses.fields(protocol.Request)
        if f.name not in job
    }
    return protocol.Request(**options, **job)


def _plain(value: Any) -> Any:
    if isinstance(value, Choice):
        return value.value
    return [_plain(v) for v in value] if isinstance(value, list) else value


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


@BACKENDS.register("tensorrt", schema=TensorRTBackendConfig)
class TensorRTBackend:
    # every route; what the installed TensorRT lacks (implicit INT8 on 11) is SKIPPED by check
    accepts = Accepts(precisions=frozenset(PRECISIONS), routes=frozenset(ROUTES))

    def __init__(self, cfg: TensorRTBackendConfig) -> None:
        self.cfg = cfg

    def check(self, s: Settings, output: Output) -> str | None:
        p = probe_cfg(self.cfg)
        if not p.get("ok"):
            return (
                f"TensorRT not available: {p.get('error', 'unknown reason')} (point qexp at a "
                "Python with TensorRT: TRT_PYTHON=/path/to/python or backend.python=...; "
                "see docs/tensorrt.md)"
            )
        calibrator = str(s.calibrator.name) if output.route == Route.trt_builtin else None
        return unsupported_reason(
            p["capabilities"], output.precision, output.route, calibrator, p["tensorrt"]
        )

    def run(self, job: Job, deploy: Deployable, data: EvalData) -> None:
        s, b = job.settings, self.cfg
        p = probe_cfg(b)
        if not p.get("ok"):
            raise TensorRTError(f"TensorRT not available: {p.get('error')}")
        imgsz, route, calibrator = s.model.imgsz, deploy.route, deploy.calibrator
        work = job.dir / "trt"
        work.mkdir(parents=True, exist_ok=True)
        onnx_path = Path(deploy.export(work))
        sizes = sorted(set(b.batch_sizes))
        if sizes != [stage.static_batch(onnx_path)]:
            onnx_path = stage.dynamic_batch(onnx_path, work / f"{onnx_path.stem}_dynbatch.onnx")
        data_key = OmegaConf.to_container(job.cfg.data, resolve=True)
        eval_dir = job.cache("trt_eval_images", data_key, imgsz)
        images, index = stage.eval_images(data, imgsz, b.eval_batch, eval_dir)
        dr = str(deploy.ranges(work)) if deploy.ranges is not None else None
        if route == Route.dynamic_range and not dr:
            raise TensorRTError("route dynamic_range: the quantizer gave no dynamic-range JSON")
        calib_dir: str | None = None
        calib_cache: str | None = None
        onnx_key = file_hash(onnx_path, 16)
        if route == Route.trt_builtin:
            num = b.calib_num or s.data.calib.num
            calib_key = (dataclasses.asdict(s.data.calib), imgsz, num)
            calib_path = job.cache("trt_calib_images", *calib_key)
            stage.calib_images(data, imgsz, num, calib_path)
            calib_dir = str(calib_path)
            cache_dir = job.cache(
                "trt_calib", onnx_key, calibrator, calib_key, b.calib_batch, p["tensorrt"]
            )
            calib_cache = str(cache_dir / "calibration.cache")
        lock = Path(tempfile.gettempdir()) / "qexp-locks" / "latency.lock"
        # the engine's path is its cache entry, keyed by what the build reads of the request
        req = worker_request(
            b, onnx=str(onnx_path), engine="", out_dir=str(work), precision=deploy.precision,
            route=route, calibrator=calibrator, calib_dir=calib_dir, calib_cache=calib_cache,
            dynamic_range=dr, eval_input=str(images), batch_sizes=sizes,
            timing_cache=str(Path(b.timing_cache).resolve()) if b.timing_cache else None,
            latency_lock=str(lock) if b.latency_lock else None,
        )  # fmt: skip

        def engine_path() -> Path:
            key = (onnx_key, dr and file_hash(Path(dr), 16), req.precision, route, calibrator,
                   calib_dir, sizes, req.workspace_gb, req.opt_level, req.fp16_fallback, req.tf32,
                   p["tensorrt"], p.get("gpu"), req.tactic_sources, req.avg_timing_iterations,
                   req.calib_batch if route == Route.trt_builtin else None,
                   req.format_filter)  # fmt: skip
            return job.cache("trt_engine", *key) / "engine.plan"

        engine = engine_path()
        built = b.reuse_engine and engine.exists() and Path(f"{engine}.json").exists()
        if route == Route.qdq and b.precheck != PrecheckMode.off and not built:
            checked = self._precheck(job, onnx_path, sizes, p, work)
            if checked != onnx_path:  # built without the refused pairs: another engine
                onnx_path, onnx_key = checked, file_hash(checked, 16)
                req.onnx = str(onnx_path)
                engine = engine_path()
        req.engine = str(engine)
        req.validate()
        resp = call_worker(b, req, work / "request.json", b.timeout_s)
        try:
            self._report(job, deploy, data, resp, index, imgsz)
        finally:
            raws = list(resp.outputs) + [r for rs in resp.outputs_by_batch.values() for r in rs]
            for raw in raws:  # hundreds of MB each; the engine and layer JSON stay
                Path(raw).unlink(missing_ok=True)

    def _precheck(self, job: Job, onnx_path: Path, sizes: list[int], p: dict[str, Any],
                  work: Path) -> Path:  # fmt: skip
        """The ONNX to build: ``onnx_path`` when TensorRT's optimizer accepts it; without the
        refused Q/DQ pairs with ``precheck=drop``; else the job fails naming them. The verdict
        is cached per (ONNX, TensorRT, GPU, batch sizes): a re-run asks TensorRT nothing."""
        b = self.cfg
        onnx_key = file_hash(onnx_path, 16)
        entry = job.cache("trt_precheck", onnx_key, p["tensorrt"], p.get("gpu"), sizes,
                          b.fp16_fallback)  # fmt: skip
        cached = entry / "verdict.json"
        if cached.exists():
            v = trt_precheck.Verdict.from_json(json.loads(cached.read_text()))
        else:
            exe, env = worker_env(b)
            checker = trt_precheck.Checker(exe, env, work, sizes, fp16=b.fp16_fallback,
                                           log=log.info)  # fmt: skip
            v = trt_precheck.precheck(onnx_path, checker)
            write_text(cached, json.dumps(v.to_json(), indent=1))
        job.add_artifact("precheck.json", write_text(work / "precheck.json",
                                                     json.dumps(v.to_json(), indent=1)))  # fmt: skip
        job.info["precheck"] = {"accepted": v.accepted, "pairs": v.pairs, "checks": len(v.checks),
                                "seconds": v.seconds, "dropped": v.ignore_patterns()}  # fmt: skip
        job.log_metrics({"precheck_s": v.seconds})
        if v.accepted:
            log.info(v.message())
            return onnx_path
        if b.precheck != PrecheckMode.drop or not v.culprits:
            raise TensorRTError(v.message())
        log.warning("%s\nbackend.precheck=drop: building without them", v.message())
        return trt_precheck.write_without(
            onnx_path, v.culprits, work / f"{onnx_path.stem}_precheck.onnx"
        )

    def _report(self, job: Job, deploy: Deployable, data: EvalData, resp: protocol.Response,
                index: dict[str, int], imgsz: int) -> None:  # fmt: skip
        b = self.cfg
        raw = np.load(resp.outputs[0], mmap_mode="r")
        predict = stage.lookup_predict(raw, index)
        ref = stage.torch_reference(deploy.detector, deploy.module) if b.align else None
        metrics = stage.evaluate(predict, deploy.detector, data, imgsz, b.eval_batch, job, ref)
        job.log_metrics(metrics)
        for bs, paths in sorted(resp.outputs_by_batch.items(), key=lambda kv: int(kv[0])):
            # the same images through the other profile: a broken profile or batch axis shows
            # as an mAP change, where raw-output diffs on empty anchors are only noise
            other = stage.lookup_predict(np.load(paths[0], mmap_mode="r"), index)
            m = stage.evaluate(other, deploy.detector, data, imgsz, b.eval_batch)
            job.log_metrics(
                {
                    f"map50_95_b{bs}": m["map50_95"],
                    f"batch_map_delta_b{bs}": m["map50_95"] - metrics["map50_95"],
                }
            )
        log_latency(job, resp.latency)
        job.log_metrics({"build_s": resp.build_s, "engine_bytes": resp.engine_bytes})
        for k in ("calib_s", "build_cpu_s"):
            if k in resp.build_stats:
                job.log_metrics({k: resp.build_stats[k]})
        sizes = sorted(int(k) for k in resp.layers)
        first = str(sizes[0])
        info = engine_info.load(resp.layers[first])
        per_batch = {bs: layer_summary(resp.layers[str(bs)], i) for i, bs in enumerate(sizes)}
        summary = per_batch[sizes[0]]
        job.log_metrics(summary.metrics())
        prof = json.loads(Path(resp.layer_profile).read_text()) if resp.layer_profile else {}
        times = engine_info.profile_times(prof) if prof else None
        engine = {
            "tensorrt": resp.tensorrt, "gpu": resp.gpu, "device": resp.device,
            "engine": resp.engine, "engine_bytes": resp.engine_bytes, "build": resp.build_stats,
            "reused_engine": resp.reused_engine, "latency": resp.latency,
            "batch_max_abs_diff": resp.batch_diff,
            "summary": {f"b{bs}": sm.to_dict() for bs, sm in per_batch.items()},
            "notes": resp.notes, "worker_s": resp.timings,
        }  # fmt: skip
        files = {
            "layers.json": json.dumps(info, indent=1),  # the engine's (all profiles on 8.6)
            "layers.csv": engine_info.to_csv(
                engine_info.layer_table(info, times, summary_profile(info, 0))
            ),
            "engine_summary.json": json.dumps(engine, indent=1),
            "engine_summary.md": "".join(
                f"batch {bs}:\n{engine_info.to_markdown(sm)}" for bs, sm in per_batch.items()
            ),
        }
        if prof:
            files["layer_profile.json"] = json.dumps(prof, indent=1)
        if resp.build_profile and Path(resp.build_profile).exists():
            files["build_profile.json"] = Path(resp.build_profile).read_text()
        for bs, path in resp.layers.items():
            if path != resp.layers[first]:  # a TensorRT that reports one profile per context
                files[f"layers_b{bs}.json"] = Path(path).read_text()
        for name, text in files.items():
            job.add_artifact(name, write_text(job.path("artifacts", name), text))
        job.info["tensorrt"] = {
            k: engine[k]
            for k in ("tensorrt", "gpu", "reused_engine", "notes", "batch_max_abs_diff")
        }
        job.info["tensorrt"]["precisions"] = summary.precisions
        job.info["gpu"] = resp.device
        job.info["cuda_graph"] = all(st.get("cuda_graph") for st in resp.latency.values())


def summary_profile(info: dict[str, Any], index: int) -> int | None:
    """The profile to read from ``info``: ``index`` where layer names carry '[profile N]'
    (a whole multi-profile engine), else all layers (the JSON is that context's alone)."""
    tagged = any(engine_info.profile_of(L) > 0 for L in engine_info.layers(info, None))
    return index if tagged else None


def layer_summary(path: str, index: int) -> engine_info.EngineSummary:
    info = engine_info.load(path)
    return engine_info.summarize(info, summary_profile(info, index))


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def log_latency(job: Job, latency: dict[str, dict[str, Any]]) -> None:
    """latency_ms_p50/p90/mean at the smallest batch (batch 1), ..._b<N> at the others;
    throughput_ips_b<N> everywhere."""
    smallest = min(int(k) for k in latency)
    for bs, st in latency.items():
        suffix = "" if int(bs) == smallest else f"_b{bs}"
        for stat in ("p50", "p90", "mean"):
            job.log_metrics({f"latency_ms_{stat}{suffix}": st[stat]})
        job.log_metrics({f"throughput_ips_b{bs}": st["throughput_ips"]})


def call_worker(
    bcfg: Any, req: protocol.Request, req_path: Path, timeout: int
) -> protocol.Response:
    """Run the worker on ``req`` (the process's long-lived one with
    ``backend.persistent_worker``, else a fresh process); raise TensorRTError with the log tail
    when it fails."""
    from qexp.trt.worker import response_path

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
