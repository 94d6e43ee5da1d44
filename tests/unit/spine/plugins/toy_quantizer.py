"""A quantizer from outside qexp: one module (this) plus one YAML (conf/quantizer/toy_round.yaml).

``quantizer=toy_round`` rounds every conv weight to ``levels`` symmetric steps per tensor and
deploys the float model: fp32 by route float, which every backend takes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from qexp.config.schema import QuantizerConfig, bounded
from qexp.contracts import Output, Precision, Route, outputs
from qexp.interfaces import Deployable
from qexp.quant.deployable import float_export
from qexp.registry import QUANTIZERS


@dataclass
class ToyRoundConfig(QuantizerConfig):
    name: str = "toy_round"
    precision: Precision = Precision.fp32
    levels: int = bounded(127, ge=2)  # steps each side of zero


@QUANTIZERS.register("toy_round", schema=ToyRoundConfig)
class ToyRound:
    consumes: frozenset[str] = frozenset()
    produces = outputs([Precision.fp32], [Route.float])

    def __init__(self, cfg: ToyRoundConfig) -> None:
        self.cfg = cfg

    def output(self) -> Output:
        return Output(str(self.cfg.precision), Route.float.value)

    def check(self, s) -> str | None:
        return None

    @torch.no_grad()
    def quantize(self, job, detector, data) -> Deployable:
        module = copy.deepcopy(detector.module)
        convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        for conv in convs:
            step = conv.weight.abs().max() / self.cfg.levels
            conv.weight.copy_(torch.round(conv.weight / step) * step)
        rounded = copy.copy(detector)
        rounded.module = module
        return Deployable(
            detector=rounded,
            module=module,
            precision=Precision.fp32.value,
            route=Route.float.value,
            export=float_export(rounded, job.settings.model.imgsz),
            info={"toy_round": {"convs": len(convs), "levels": self.cfg.levels}},
        )
