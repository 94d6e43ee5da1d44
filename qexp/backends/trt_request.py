"""The TensorRT worker's request, built from the typed backend config (one place, so the request
and the backend options cannot drift: every protocol field that is not a job's own is the
backend option of the same name)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from qexp.contracts import Choice
from qexp.trt import protocol

if TYPE_CHECKING:
    from qexp.backends.tensorrt import TensorRTBackendConfig

# The request fields that describe the job, not a backend option (worker_request sets them);
# every other field of protocol.Request is the backend option of the same name.
JOB_FIELDS = ("onnx", "engine", "out_dir", "precision", "route", "calibrator", "calib_dir",
              "calib_cache", "dynamic_range", "float_layers", "eval_input", "timing_cache", "latency_lock",
              "build_slots", "batch_sizes")  # fmt: skip


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
