"""The file protocol between the client backend and the worker: one request JSON in, one out.

Standard library only: the client (Python 3.12, torch) and the worker (Python 3.10, TensorRT)
both import this module (and qexp.contracts, the precisions and routes, standard library too).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from qexp.contracts import PRECISIONS, ROUTES

# trt.TacticSource members a request may enable (None = TensorRT's own default set)
TACTIC_SOURCES = ("CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS")
# TensorRT's class for each calibrator choice (removed in TensorRT 11; see compat.py)
CALIBRATOR_CLASSES = {
    "minmax": "IInt8MinMaxCalibrator",
    "entropy": "IInt8EntropyCalibrator",
    "entropy2": "IInt8EntropyCalibrator2",
    "legacy": "IInt8LegacyCalibrator",
}
CALIBRATORS = tuple(CALIBRATOR_CLASSES)  # the calibrator choices a request may name


class ProtocolError(ValueError):
    """A request or response that does not follow this protocol (the message names the key)."""


@dataclass
class Request:
    """What the worker builds and measures. Paths are absolute."""

    onnx: str
    engine: str  # the serialized engine: read if it exists and reuse_engine, else written
    out_dir: str  # layer JSON, profile, raw outputs go here
    precision: str = "fp32"
    route: str = "float"
    calibrator: str | None = None  # route trt_builtin
    calib_dir: str | None = None  # *.npy (B, C, H, W): uint8 (/255), float16 or float32
    calib_cache: str | None = None
    dynamic_range: str | None = None  # JSON {tensor name: amax}, route dynamic_range
    # route dynamic_range: layers (ONNX node names) built in float under a precision constraint
    # (the client's trt_stage.float_islands: float layers whose output has a range)
    float_layers: list[str] | None = None
    timing_cache: str | None = None
    workspace_gb: float = 4.0
    opt_level: int | None = 3  # builder optimisation level (TensorRT >= 8.6)
    tactic_sources: list[str] | None = None  # enabled TacticSource names; None: TensorRT's
    avg_timing_iterations: int | None = None  # None: TensorRT's default
    format_filter: str | None = None  # "no_fp32": don't time fp32 implementations (selector.py)
    calib_batch: int = 1  # route trt_builtin: images per calibration batch
    build_profile: bool = False  # time the build from TensorRT's verbose log (build_profile.json)
    fp16_fallback: bool = True  # int8 engines may also pick fp16 kernels (as trtexec --fp16)
    tf32: bool = False  # allow TF32 for fp32 layers (TensorRT's default is on; --noTF32 = off)
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    reuse_engine: bool = True
    eval_input: str | None = None  # .npy (N, C, H, W): uint8 (/255), float16 or float32
    eval_batch: int = 1  # one of batch_sizes
    eval_all_batches: bool = True  # also run the eval images at every other batch size
    warmup: int = 50
    iters: int = 200
    cuda_graph: bool = True
    latency_lock: str | None = None  # a file locked host-wide while latency is timed
    build_slots: int | None = None  # builds at once on this GPU, host-wide (None: no cap)
    profile_iters: int = 20
    log_level: str = "warning"  # TensorRT logger: error | warning | info | verbose
    # trt.PreviewFeature members to enable (e.g. PROFILE_SHARING_0806: one tactic search shared
    # by the optimisation profiles); added after engines were cached: at its default it is not
    # part of the engine key (ADDED)
    preview_features: list[str] | None = None

    def validate(self) -> None:
        def bad(key: str, why: str) -> ProtocolError:
            return ProtocolError(f"request.{key}={getattr(self, key)!r}: {why}")

        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {PRECISIONS}")
        if self.route not in ROUTES:
            raise bad("route", f"must be one of {ROUTES}")
        if self.route != "float" and self.precision != "int8":
            raise bad("route", "int8 routes need precision int8")
        if self.route == "float" and self.precision == "int8":
            raise bad("precision", "int8 needs route qdq, dynamic_range or trt_builtin")
        if self.route == "trt_builtin":
            if self.calibrator not in CALIBRATORS:
                raise bad("calibrator", f"route trt_builtin needs one of {CALIBRATORS}")
            if not self.calib_dir:
                raise bad("calib_dir", "route trt_builtin needs calibration batches")
        if self.route == "dynamic_range" and not self.dynamic_range:
            raise bad("dynamic_range", "route dynamic_range needs a JSON of ranges")
        if self.float_layers and self.route != "dynamic_range":
            raise bad("float_layers", "only the dynamic_range route takes float layers")
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise bad("batch_sizes", "must be a non-empty list of positive ints")
        if self.batch_sizes != sorted(set(self.batch_sizes)):
            raise bad("batch_sizes", "must be strictly increasing")
        if self.eval_input and self.eval_batch not in self.batch_sizes:
            raise bad("eval_batch", f"must be one of batch_sizes {self.batch_sizes}")
        if self.iters < 1 or self.warmup < 0:
            raise bad("iters", "iters must be >= 1 and warmup >= 0")
        if self.tactic_sources is not None:
            unknown = sorted(set(self.tactic_sources) - set(TACTIC_SOURCES))
            if unknown:
                raise bad("tactic_sources", f"unknown {unknown}; known: {TACTIC_SOURCES}")
        if self.format_filter not in (None, "no_fp32"):
            raise bad("format_filter", "must be null or 'no_fp32'")
        if self.calib_batch < 1:
            raise bad("calib_batch", "must be >= 1")


# What the engine depends on (the client's engine cache key, qexp/backends/trt_engine_key.py):
# every Request field but these, which say where files go, how the engine is measured and what
# is logged (calib_cache: a file the calibration fields decide; timing_cache: it speeds the
# build up and changes nothing it must build). A field added to Request is keyed unless named.
NOT_IN_ENGINE = frozenset({"engine", "out_dir", "calib_cache", "timing_cache", "build_profile",
                           "reuse_engine", "eval_input", "eval_batch", "eval_all_batches",
                           "warmup", "iters", "cuda_graph", "latency_lock", "build_slots",
                           "profile_iters", "log_level"})  # fmt: skip
# Fields the build reads on one route only (on the others they are keyed as None, so that
# backend.calib_batch, say, does not rebuild the fp16 engine).
ROUTE_ONLY = {"calibrator": "trt_builtin", "calib_dir": "trt_builtin", "calib_batch": "trt_builtin"}
# Fields added after engines were cached: keyed only when they differ from their default, so
# the engines built before keep their key.
ADDED = frozenset({"preview_features", "float_layers"})
# Fields that name a file the build reads: keyed by its content, not its path.
FILE_FIELDS = ("onnx", "dynamic_range")


@dataclass
class Response:
    """What the worker measured; ``ok=False`` carries the error and TensorRT's log tail."""

    ok: bool
    error: str | None = None
    unsupported: bool = False  # the installed TensorRT lacks a feature (SKIP, not FAIL)
    log_tail: list[str] = field(default_factory=list)
    tensorrt: str = ""
    gpu: str = ""
    engine: str = ""
    engine_bytes: int = 0
    build_s: float = 0.0
    build_stats: dict[str, float] = field(default_factory=dict)  # build_s, calib_s, ...
    reused_engine: bool = False
    build_profile: str = ""  # build_profile.json (route of the build time), when asked for
    device: dict[str, Any] = field(default_factory=dict)  # index, name, uuid of the GPU used
    pid: int = 0  # the worker process (a serving worker answers many requests)
    layers: dict[str, str] = field(default_factory=dict)  # batch -> inspector JSON path
    layer_profile: str = ""
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)  # batch -> stats (ms)
    outputs: list[str] = field(default_factory=list)  # raw eval outputs .npy, network order
    outputs_by_batch: dict[str, list[str]] = field(default_factory=dict)  # other batch sizes
    output_names: list[str] = field(default_factory=list)
    eval_images: int = 0
    batch_diff: dict[str, float] = field(default_factory=dict)  # batch -> max |diff| vs eval batch
    notes: list[str] = field(default_factory=list)  # e.g. cuda graph fell back, ranges missing
    timings: dict[str, float] = field(default_factory=dict)  # seconds per worker stage


def to_json(obj: Any) -> str:
    return json.dumps(dataclasses.asdict(obj), indent=1, sort_keys=True)


def from_dict(cls: type, d: dict[str, Any], what: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ProtocolError(f"{what}: unknown keys {unknown}")
    try:
        return cls(**d)
    except TypeError as e:
        raise ProtocolError(f"{what}: {e}") from None


def read(cls: type, path: str) -> Any:
    """Read a Request or Response JSON file, naming the file on error."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise ProtocolError(f"cannot read {cls.__name__.lower()} {path}: {e}") from None
    if not isinstance(d, dict):
        raise ProtocolError(f"{path}: expected a JSON object")
    return from_dict(cls, d, path)


def write(obj: Any, path: str) -> None:
    """Atomic write: the client never reads half a response."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(to_json(obj))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
