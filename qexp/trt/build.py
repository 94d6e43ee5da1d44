"""ONNX -> serialized engine for one request: precision flags, INT8 route, profiles, caches.

Batch: one engine holds one optimisation profile per requested batch size (min = opt = max),
so each batch size gets kernels tuned for it (as separate engines would) from one parse, one
calibration and one build call. That needs an ONNX with a dynamic batch axis (the client
provides one); a static-batch ONNX builds only for its own batch size.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
from typing import Any

from qexp.trt import compat
from qexp.trt.calibrator import make_calibrator
from qexp.trt.cuda import Cuda
from qexp.trt.protocol import Request
from qexp.trt.selector import make_selector


class BuildError(RuntimeError):
    """The engine could not be built (the worker adds TensorRT's log tail)."""


def parse_onnx(trt: Any, logger: Any, onnx_path: str, strongly_typed: bool) -> tuple[Any, Any, Any]:
    builder = trt.Builder(logger)
    if builder is None:
        raise BuildError("trt.Builder() returned None (no usable GPU?)")
    network = builder.create_network(compat.network_flags(trt, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if hasattr(parser, "parse_from_file"):  # resolves external-data files next to the ONNX
        ok = parser.parse_from_file(onnx_path)
    else:
        with open(onnx_path, "rb") as f:
            ok = parser.parse(f.read())
    if not ok:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError(f"cannot parse {onnx_path}: " + "; ".join(errors or ["unknown error"]))
    if network.num_inputs != 1:
        raise BuildError(f"{onnx_path}: expected one input (images), found {network.num_inputs}")
    return builder, network, parser


def add_profiles(
    builder: Any, network: Any, config: Any, batch_sizes: list[int]
) -> tuple[int, ...]:
    """One profile per batch size; returns the input shape at batch_sizes[0]."""
    inp = network.get_input(0)
    shape = tuple(int(d) for d in inp.shape)
    if any(d < 0 for d in shape[1:]):
        raise BuildError(
            f"input {inp.name} has dynamic non-batch dims {shape}: export a static imgsz"
        )
    if shape[0] >= 0:
        if batch_sizes != [shape[0]]:
            raise BuildError(
                f"input {inp.name} has a static batch {shape[0]}; batch_sizes {batch_sizes} need an "
                "ONNX with a dynamic batch axis"
            )
        return shape
    for b in batch_sizes:
        profile = builder.create_optimization_profile()
        dims = (b, *shape[1:])
        profile.set_shape(inp.name, dims, dims, dims)
        config.add_optimization_profile(profile)
    return (batch_sizes[0], *shape[1:])


def apply_dynamic_ranges(trt: Any, network: Any, path: str) -> tuple[int, list[str]]:
    """Set |amax| ranges from JSON {tensor name: amax} on matching network tensors."""
    with open(path) as f:
        ranges = {str(k): float(v) for k, v in json.load(f).items()}
    seen: set[str] = set()
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        tensors += [layer.get_output(j) for j in range(layer.num_outputs)]
    for t in tensors:
        if t.name in ranges and compat.set_dynamic_range(t, ranges[t.name]):
            seen.add(t.name)
    missing = sorted(set(ranges) - seen)
    if not seen:
        raise BuildError(f"none of the {len(ranges)} ranges in {path} names a network tensor")
    return len(seen), missing


# The timing cache of this process: every engine a serving worker builds (a sweep's jobs on
# one GPU) reads and extends the same object. Kept in memory because TensorRT 8.6.0 cannot
# reload a serialized cache that holds Myelin entries ("Myelin error from unknown graph").
SHARED_TIMING_CACHE: dict[str, Any] = {}


def attach_timing_cache(config: Any, path: str | None, log: Any) -> Any:
    """Give ``config`` this process's timing cache, created from ``path`` the first time."""
    cache = SHARED_TIMING_CACHE.get("cache")
    if cache is not None and config.set_timing_cache(cache, False):
        return cache
    blob = b""
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            blob = f.read()
    cache = config.create_timing_cache(blob)
    if cache is None or not config.set_timing_cache(cache, False):
        # another GPU's or TensorRT's cache, or one this TensorRT cannot read back
        log.note(f"timing cache {path} not usable here; starting a fresh one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    SHARED_TIMING_CACHE["cache"] = cache
    return cache


def save_timing_cache(cache: Any, path: str | None) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    blob = compat.host_bytes(cache.serialize())
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)  # parallel jobs: last writer wins, readers see a whole file


def cpu_seconds() -> float:
    """CPU time of this process so far (all threads): with build_s it shows whether a build
    waits on the GPU or computes on the host."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def build(
    trt: Any, req: Request, logger: Any, cuda: Cuda, log: Any
) -> tuple[bytes, dict[str, float]]:
    """Build the engine; returns (serialized plan, {build_s (incl. calibration), calib_s})."""
    caps = compat.capabilities(trt)
    why = compat.unsupported_reason(
        caps, req.precision, req.route, req.calibrator, compat.version(trt)
    )
    if why:
        raise compat.Unsupported(why)
    # TensorRT 11 builds Q/DQ only in a strongly typed network (no INT8 flag left)
    strongly_typed = req.route == "qdq" and not caps["int8_flag"]
    builder, network, _parser = parse_onnx(trt, logger, req.onnx, strongly_typed)
    config = builder.create_builder_config()
    compat.set_workspace(trt, config, int(req.workspace_gb * (1 << 30)))
    compat.set_opt_level(config, req.opt_level)
    compat.set_detailed_profiling(trt, config)
    if req.tactic_sources is not None:
        compat.set_tactic_sources(trt, config, req.tactic_sources)
    if req.avg_timing_iterations is not None:
        config.avg_timing_iterations = int(req.avg_timing_iterations)
    compat.set_preview_features(trt, config, list(req.preview_features or []))
    selector = None
    # fp32 engines keep every fp32 format: the filter is for fp16/int8 builds only
    if req.format_filter and req.precision != "fp32":
        selector = make_selector(trt, req.format_filter)
        config.algorithm_selector = selector
    input_shape = add_profiles(builder, network, config, list(req.batch_sizes))
    if not req.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if not strongly_typed:
        if req.precision == "fp16" or (req.precision == "int8" and req.fp16_fallback):
            compat.set_flag(trt, config, "FP16")
        if req.precision == "int8":
            compat.set_flag(trt, config, "INT8")
    calibrator = None
    if req.route == "dynamic_range":
        n, missing = apply_dynamic_ranges(trt, network, str(req.dynamic_range))
        log.note(f"dynamic ranges set on {n} tensors; {len(missing)} names not in the network")
        if req.float_layers:
            kept = compat.constrain_float(
                trt, network, config, list(req.float_layers), req.fp16_fallback
            )
            lost = sorted(set(req.float_layers) - set(kept))
            log.note(f"{len(kept)} layers constrained to float; {len(lost)} names not layers")
    elif req.route == "trt_builtin":
        calib_shape = input_shape
        if config.num_optimization_profiles > 0:  # a dynamic batch: calibrate at calib_batch
            calib_shape = (int(req.calib_batch), *input_shape[1:])
            config.set_calibration_profile(_calib_profile(builder, network, calib_shape))
        calibrator = make_calibrator(
            trt, str(req.calibrator), str(req.calib_dir), calib_shape[0], calib_shape,
            req.calib_cache, cuda, log,
        )  # fmt: skip
        config.int8_calibrator = calibrator
    cache = attach_timing_cache(config, req.timing_cache, log)
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    plan = None
    try:
        plan = builder.build_serialized_network(network, config)
    except Exception as e:  # noqa: BLE001 - retried below without the selector
        if selector is None:
            raise
        log.note(f"build with format_filter={req.format_filter} raised {e}")
    if plan is None and selector is not None:
        # never lose an engine to the search shortcut: the same build with the full search
        log.note(f"format_filter={req.format_filter} gave no engine; rebuilt without it")
        with contextlib.suppress(TypeError):  # a binding that refuses None: the flag below
            config.algorithm_selector = None
        selector = None
        plan = builder.build_serialized_network(network, config)
    stats = {"build_s": time.perf_counter() - t0, "build_cpu_s": cpu_seconds() - cpu0}
    if calibrator is not None:
        stats["calib_s"] = calibrator.seconds()
        stats["calib_images"] = float(calibrator.count)
        calibrator.free()
    if selector is not None:
        stats.update(selector.stats())
    if plan is None:
        raise BuildError("build_serialized_network returned no engine (see TensorRT's log)")
    save_timing_cache(cache, req.timing_cache)
    return compat.host_bytes(plan), stats


def _calib_profile(builder: Any, network: Any, shape: tuple[int, ...]) -> Any:
    """The calibration profile at the calibration batch (calibration feeds that many images)."""
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, shape, shape, shape)
    return profile
