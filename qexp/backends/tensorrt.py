"""backend=tensorrt: build and measure TensorRT engines through the worker in qexp/trt/.

The worker runs under ``backend.python`` (default $TRT_PYTHON, else this interpreter) with
``backend.pythonpath`` / ``backend.ld_library_path`` ($TRT_PYTHONPATH, $TRT_LD_LIBRARY_PATH), so
the TensorRT build may live in another Python than qexp's. This client stages the ONNX (with a
dynamic batch axis), the eval and calibration images as .npy, sends one request
(:mod:`~qexp.backends.trt_request`, its engine keyed by :mod:`~qexp.backends.trt_engine_key`,
through :mod:`~qexp.backends.trt_client`), and scores the raw outputs it gets back with the
shared eval pipeline (:mod:`~qexp.backends.trt_results`).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from qexp import gpu_share
from qexp.backends import trt_precheck
from qexp.backends import trt_stage as stage
from qexp.backends.trt_client import TensorRTError, call_worker, probe, probe_cfg, worker_env
from qexp.backends.trt_engine_key import engine_key
from qexp.backends.trt_request import JOB_FIELDS, worker_request
from qexp.backends.trt_results import log_latency, report, summary_profile
from qexp.cache import file_hash
from qexp.config.schema import BackendConfig, OptionError, added, bounded
from qexp.config.settings import Settings
from qexp.contracts import PRECISIONS, ROUTES, Accepts, Choice, Output, Route
from qexp.interfaces import Deployable, EvalData
from qexp.job import Job
from qexp.registry import BACKENDS
from qexp.trt import protocol
from qexp.trt.compat import unsupported_reason

log = logging.getLogger("qexp")

# the client's names tests and scripts reach through this module (each defined in the module
# named for its job: trt_request, trt_engine_key, trt_client, trt_results)
__all__ = [
    "JOB_FIELDS", "FormatFilter", "PrecheckMode", "TensorRTBackend", "TensorRTBackendConfig", "TensorRTError",
    "TrtLogLevel", "call_worker", "engine_key", "log_latency", "probe", "probe_cfg",
    "summary_profile", "worker_env", "worker_request",
]  # fmt: skip


class FormatFilter(Choice):
    # fp16/int8 builds don't time fp32 implementations where others exist (most of a build is
    # timing reformats between fp32 and fp16 formats)
    no_fp32 = "no_fp32"


PrecheckMode = trt_precheck.PrecheckMode


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
    # trt.PreviewFeature names, e.g. [PROFILE_SHARING_0806] (docs/tensorrt.md)
    preview_features: list[str] | None = added(None)

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
        eval_dir = job.cache("trt_eval_images", dataclasses.asdict(s.data), imgsz)
        images, index = stage.eval_images(data, imgsz, b.eval_batch, eval_dir)
        dr = str(deploy.ranges(work)) if deploy.ranges is not None else None
        if route == Route.dynamic_range and not dr:
            raise TensorRTError("route dynamic_range: the quantizer gave no dynamic-range JSON")
        float_layers = stage.float_islands(onnx_path, Path(dr)) if dr else []
        if float_layers:
            log.info("%d layers built float (no range on their input): %s", len(float_layers),
                     ", ".join(float_layers[:6]) + (" ..." if len(float_layers) > 6 else ""))  # fmt: skip
        calib_dir: str | None = None
        calib_cache: str | None = None
        if route == Route.trt_builtin:
            num = b.calib_num or s.data.calib.num
            calib_key = (dataclasses.asdict(s.data.calib), imgsz, num)
            calib_path = job.cache("trt_calib_images", *calib_key)
            stage.calib_images(data, imgsz, num, calib_path)
            calib_dir = str(calib_path)
            onnx_key = file_hash(onnx_path, 16)
            cache_dir = job.cache(
                "trt_calib", onnx_key, calibrator, calib_key, b.calib_batch, p["tensorrt"]
            )
            calib_cache = str(cache_dir / "calibration.cache")
        lock = Path(tempfile.gettempdir()) / "qexp-locks" / "latency.lock"
        # the engine's path is its cache entry, keyed by what the build reads of the request
        req = worker_request(
            b, onnx=str(onnx_path), engine="", out_dir=str(work), precision=deploy.precision,
            route=route, calibrator=calibrator, calib_dir=calib_dir, calib_cache=calib_cache,
            dynamic_range=dr, float_layers=float_layers or None, eval_input=str(images),
            batch_sizes=sizes,
            timing_cache=str(Path(b.timing_cache).resolve()) if b.timing_cache else None,
            latency_lock=str(lock) if b.latency_lock else None,
            build_slots=gpu_share.jobs_per_gpu() if b.latency_lock else None,
        )  # fmt: skip
        engine = job.cache("trt_engine", engine_key(req, p)) / "engine.plan"
        built = b.reuse_engine and engine.exists() and Path(f"{engine}.json").exists()
        if route == Route.qdq and b.precheck != PrecheckMode.off and not built:
            checked = trt_precheck.checked_onnx(job, b, onnx_path, sizes, p, work)
            if checked != onnx_path:  # built without the refused pairs: another engine
                req.onnx = str(checked)
                engine = job.cache("trt_engine", engine_key(req, p)) / "engine.plan"
        req.engine = str(engine)
        req.validate()
        resp = call_worker(b, req, work / "request.json", b.timeout_s)
        try:
            report(job, b, deploy, data, resp, index, imgsz)
            if float_layers:
                job.info.setdefault("tensorrt", {})["float_layers"] = float_layers
        finally:
            raws = list(resp.outputs) + [r for rs in resp.outputs_by_batch.values() for r in rs]
            for raw in raws:  # hundreds of MB each; the engine and layer JSON stay
                Path(raw).unlink(missing_ok=True)
