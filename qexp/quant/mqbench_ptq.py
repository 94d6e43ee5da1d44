"""quantizer.impl=mqbench: MQBench's observers, exporting its clip-range JSON (optional).

MQBench is not a dependency: without it the job is SKIPPED with the reason below.
"""

from __future__ import annotations

from importlib.util import find_spec

from omegaconf import DictConfig

from qexp.interfaces import Deployable, Detector, EvalData
from qexp.job import Job


def check(cfg: DictConfig) -> str | None:
    if find_spec("mqbench") is None:
        return "quantizer.impl=mqbench needs MQBench, which is not installed (optional extra)"
    return (
        "quantizer.impl=mqbench: MQBench is installed but this route is not implemented yet "
        "(its tracer needs a YOLO wrapper; see docs/quantization.md)"
    )


def quantize(job: Job, detector: Detector, data: EvalData) -> Deployable:
    raise RuntimeError(check(job.cfg) or "impl=mqbench is not available")
