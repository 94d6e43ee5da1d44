"""quantizer=trt_builtin: a float ONNX, INT8-calibrated by TensorRT's own calibrator.

Nothing is quantized on the torch side: the ``calibrator`` axis (minmax | entropy | entropy2 |
legacy) picks TensorRT's IInt8*Calibrator, which the tensorrt backend feeds with the calibration
images. TensorRT deprecated these calibrators in 10.1 and removed them in 11; there the backend
SKIPS the job with that reason (quantizer=ptq export=qdq is the route that survives).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from qexp.config.schema import QuantizerConfig
from qexp.interfaces import Deployable, Detector, EvalData
from qexp.job import Job
from qexp.registry import QUANTIZERS


@dataclass
class TrtBuiltinConfig(QuantizerConfig):
    name: str = "trt_builtin"
    precision: str = "int8"
    export: str = "none"  # the ONNX stays float; TensorRT picks the scales


@QUANTIZERS.register("trt_builtin", schema=TrtBuiltinConfig)
class TrtBuiltinQuantizer:
    consumes: frozenset[str] = frozenset({"calibrator"})

    def check(self, cfg: DictConfig) -> str | None:
        if cfg.calibrator.name == "none":
            return "quantizer=trt_builtin needs a calibrator (minmax, entropy, entropy2, legacy)"
        if cfg.backend.name != "tensorrt":
            return f"quantizer=trt_builtin calibrates inside TensorRT: needs backend=tensorrt, not {cfg.backend.name}"
        if cfg.quantizer.precision != "int8":
            return f"quantizer=trt_builtin builds INT8 engines: precision={cfg.quantizer.precision} is a baseline (use quantizer=none)"
        return None

    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable:
        from qexp.quant.none import float_export

        export = float_export(detector, int(job.cfg.model.imgsz))
        return Deployable(
            detector=detector,
            module=detector.module,
            precision="int8",
            route="trt_builtin",
            export=export,
            info={"calibrator": str(job.cfg.calibrator.name)},
        )
