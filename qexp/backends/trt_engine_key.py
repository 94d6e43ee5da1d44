"""The key of the TensorRT engine cache (``trt_engine/<hash>/engine.plan``): what the build of
a request reads, so a job whose build would read the same reuses the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qexp.cache import file_hash
from qexp.contracts import Route
from qexp.trt import protocol


def engine_key(req: protocol.Request, onnx_key: str, probe: dict[str, Any]) -> tuple:
    """The engine's cache key: the ONNX's content (``onnx_key``) and the dynamic-range JSON's,
    the build options of ``req``, and the TensorRT version and GPU the worker ``probe`` found."""
    dr = req.dynamic_range
    route = req.route
    return (onnx_key, dr and file_hash(Path(dr), 16), req.precision, route, req.calibrator,
            req.calib_dir, req.batch_sizes, req.workspace_gb, req.opt_level, req.fp16_fallback,
            req.tf32, probe["tensorrt"], probe.get("gpu"), req.tactic_sources,
            req.avg_timing_iterations, req.calib_batch if route == Route.trt_builtin else None,
            req.format_filter)  # fmt: skip
