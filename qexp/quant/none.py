"""quantizer=none: the float baselines (fp32, and fp16 where the backend builds it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig

from qexp.interfaces import Deployable, Detector, EvalData
from qexp.job import Job
from qexp.registry import QUANTIZERS


def float_export(detector: Detector, imgsz: int) -> Callable[..., Path]:
    """The export of the float module: every route that hands TensorRT an fp32 ONNX uses it."""

    def export(out_dir: Path, batch: int = 1, dynamic: bool = False) -> Path:
        """``dynamic``: batch, height and width symbolic (rect-mode evaluation)."""
        tag = "_dyn" if dynamic else ""
        path = Path(out_dir) / f"{detector.name}_fp32_{imgsz}_b{batch}{tag}.onnx"
        if not path.exists():
            if dynamic:
                cast(Any, detector).export_onnx(detector.module, path, imgsz, batch, dynamic=True)
            else:
                detector.export_onnx(detector.module, path, imgsz, batch)
        return path

    return export


@QUANTIZERS.register("none")
class NoQuantizer:
    consumes: frozenset[str] = frozenset()

    def check(self, cfg: DictConfig) -> str | None:
        if cfg.quantizer.precision == "int8":
            return "quantizer=none is a float baseline: precision must be fp32 or fp16"
        return None

    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable:
        export = float_export(detector, int(job.cfg.model.imgsz))
        return Deployable(
            detector=detector,
            module=detector.module,
            precision=str(job.cfg.quantizer.precision),
            route="float",
            export=export,
        )
