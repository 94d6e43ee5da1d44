"""quantizer=trt_builtin: a float ONNX, INT8-calibrated by TensorRT's own calibrator.

Nothing is quantized on the torch side: the ``calibrator`` axis (minmax | entropy | entropy2 |
legacy) picks TensorRT's IInt8*Calibrator, which a backend that accepts route ``trt_builtin``
feeds with the calibration images. TensorRT deprecated these calibrators in 10.1 and removed
them in 11; there the job is SKIPPED with that reason (export=qdq is the route that survives).
"""

from __future__ import annotations

from dataclasses import dataclass

from qexp.config.schema import Export, QuantizerConfig, TrtCalibrator
from qexp.config.settings import Settings
from qexp.contracts import Output, Precision, Route, outputs
from qexp.interfaces import Deployable, Detector, EvalData
from qexp.job import Job
from qexp.quant.deployable import float_export
from qexp.registry import QUANTIZERS


@dataclass
class TrtBuiltinConfig(QuantizerConfig):
    name: str = "trt_builtin"
    precision: Precision = Precision.int8
    export: Export = Export.none  # the ONNX stays float; TensorRT picks the scales


@QUANTIZERS.register("trt_builtin", schema=TrtBuiltinConfig)
class TrtBuiltinQuantizer:
    consumes: frozenset[str] = frozenset({"calibrator"})
    produces = outputs([Precision.int8], [Route.trt_builtin])

    def __init__(self, cfg: TrtBuiltinConfig) -> None:
        self.cfg = cfg

    def output(self) -> Output:
        return Output(self.cfg.precision, Route.trt_builtin)

    def check(self, s: Settings) -> str | None:
        if s.calibrator.name == TrtCalibrator.none:
            names = ", ".join(c.value for c in TrtCalibrator if c != TrtCalibrator.none)
            return f"quantizer=trt_builtin needs a calibrator ({names})"
        return None

    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable:
        calibrator = str(job.settings.calibrator.name)
        return Deployable(
            detector=detector,
            module=detector.module,
            precision=Precision.int8.value,
            route=Route.trt_builtin.value,
            export=float_export(detector, job.settings.model.imgsz),
            calibrator=calibrator,
            info={"calibrator": calibrator},
        )
