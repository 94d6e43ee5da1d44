"""What every fake-quant quantizer (ptq, adaround, qat, ptq_mqbench) shares: its schema, the
combination rules it checks, and ``calibrated`` (the job's ignore list, then prepare ->
calibrate -> set ranges with the job's observer), the start of all of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from torch import nn

from qexp.config.schema import OptionError, QuantizerConfig, added
from qexp.config.settings import Settings
from qexp.contracts import Output, Precision, Route, outputs
from qexp.interfaces import Detector, EvalData
from qexp.job import Job
from qexp.quant import model_cache
from qexp.quant.placement import QuantPlan
from qexp.quant.qdq_rules import QdqRules
from qexp.quant.sensitivity import ignore_patterns
from qexp.quant.steps import calibrate, prepare_model, set_ranges
from qexp.registry import OBSERVERS

# What a fake-quant model becomes: Q/DQ, or an fp32 ONNX with the observers' ranges.
INT8_OUTPUTS = outputs([Precision.int8], [Route.qdq, Route.dynamic_range])


@dataclass
class PTQConfig(QuantizerConfig):
    name: str = "ptq"
    residual: bool = True  # quantize the identity branch of residual adds (TensorRT fusion)
    fold_bn: bool = True
    # trt: one scale per group of quantizers reading tensors joined by Concat, MaxPool, Slice,
    # Resize (qexp/quant/qdq_rules.py); none: each quantizer its own (the numbers so far)
    qdq_rules: QdqRules = added(QdqRules.none)

    def rules(self) -> None:
        super().rules()
        if self.qdq_rules == QdqRules.trt and not self.residual:
            raise OptionError(
                "qdq_rules", str(self.qdq_rules),
                "trt quantizes the identity input of residual adds: needs residual=true",
            )  # fmt: skip


C = TypeVar("C", bound=PTQConfig)


class FakeQuantQuantizer(Generic[C]):
    """Base of the quantizers that export a fake-quant model: constructed with their schema
    object, they read the observer and ignore axes and make INT8 by ``quantizer.export``.
    Subclasses add ``quantize`` (and may narrow ``produces`` or extend ``check``)."""

    consumes: frozenset[str] = frozenset({"observer", "ignore"})
    produces = INT8_OUTPUTS

    def __init__(self, cfg: C) -> None:
        self.cfg = cfg

    def output(self) -> Output:
        return Output(self.cfg.precision, self.cfg.export)

    def check(self, s: Settings) -> str | None:
        return check(self.cfg, s)

    def calibrated(self, job: Job, detector: Detector, data: EvalData) -> Calibrated:
        return calibrated(job, detector, data, self.cfg)


def check(q: QuantizerConfig, s: Settings) -> str | None:
    """The combination rules of every quantizer that exports our fake-quant model: a reason
    to SKIP, or None."""
    if q.export == Route.dynamic_range and (q.w_bits != 8 or q.a_bits != 8):
        # TensorRT's implicit INT8 quantizes weights and activations to 8 bits itself; the JSON
        # carries activation ranges only, so other bit widths would not be what was measured
        return "export=dynamic_range is TensorRT's implicit INT8: w_bits and a_bits must be 8"
    if not OBSERVERS.get(s.observer.weight).weights:
        return f"observer.weight={s.observer.weight} calibrates activations only"
    return None


@dataclass
class Calibrated:
    """PTQ's result before export, the start of AdaRound and QAT too: the float model, its
    fake-quant twin with ranges set by the job's observer, and how calibration went."""

    fmodel: nn.Module
    qmodel: nn.Module
    plan: QuantPlan
    amax: dict[str, float]  # activation amax per layer
    num: int | None  # data.calib.num (None: the whole calibration split)
    seconds: float
    hit: bool  # calibration statistics served from the cache
    started: float  # time.perf_counter() when the quantizer started

    def timings(self) -> dict[str, float]:
        """calib_s, and quantize_s up to now (the metrics every such quantizer logs)."""
        return {"calib_s": self.seconds, "quantize_s": time.perf_counter() - self.started}

    def info(self, s: Settings) -> dict:
        """The record fields every observer-calibrated quantizer reports."""
        return {
            **self.plan.info(),
            "observer": {"act": s.observer.act, "weight": s.observer.weight},
            "calib_cache": "hit" if self.hit else "miss",
        }

    def act_amax(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in self.amax.items()}


def calibrated(job: Job, detector: Detector, data: EvalData, q: PTQConfig) -> Calibrated:
    """prepare -> calibrate (cached) -> set ranges, with the job's ignore list and observer."""
    s, started = job.settings, time.perf_counter()
    patterns = ignore_patterns(job, detector, data)  # ignore=sensitivity_topk: ranked layers
    fmodel, qmodel, plan = prepare_model(detector.module, patterns, q, q.fold_bn)
    num = s.data.calib.num
    stats, seconds, hit = calibrate(job, fmodel, data, s.model.imgsz, num, s.observer.bins)
    amax = set_ranges(qmodel, plan, stats, s.observer)
    return Calibrated(fmodel, qmodel, plan, amax, num, seconds, hit, started)


def trained(
    job: Job, kind: str, version: int, c: Calibrated, **files: Any
) -> tuple[int, Path, Any]:
    """(training images, cache directory, its cached (state, meta) or None) of what a learning
    quantizer (AdaRound, QAT) trains on top of ``c``: the jobs of a sweep that differ only in
    backend train once. ``files``: model_cache.load's file names."""
    s = job.settings
    images = model_cache.train_images(s.quantizer, s.data)
    key = model_cache.key(kind, version, c.fmodel, s, c.plan.quantized, images)
    directory = job.cache(kind, *key)
    return images, directory, model_cache.load(directory, **files)
