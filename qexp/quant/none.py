"""quantizer=none: the float baselines (fp32, and fp16 where the backend builds it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qexp.config.schema import QuantizerConfig
from qexp.contracts import Output, Precision, Route, outputs
from qexp.interfaces import Deployable, Detector, EvalData
from qexp.quant.deployable import float_export
from qexp.registry import QUANTIZERS

if TYPE_CHECKING:
    from qexp.config.settings import Settings
    from qexp.job import Job


@QUANTIZERS.register("none")
class NoQuantizer:
    consumes: frozenset[str] = frozenset()
    produces = outputs([Precision.fp32, Precision.fp16], [Route.float])

    def __init__(self, cfg: QuantizerConfig) -> None:
        self.cfg = cfg

    def output(self) -> Output:
        return Output(self.cfg.precision, Route.float)

    def check(self, s: Settings) -> str | None:
        return None

    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable:
        return Deployable(
            detector=detector,
            module=detector.module,
            precision=str(self.cfg.precision),
            route=Route.float.value,
            export=float_export(detector, job.settings.model.imgsz),
        )
