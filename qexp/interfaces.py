"""The contracts between the runner and its plugins.

The runner (``qexp/runner.py``) drives one job through these interfaces only:

    detector = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)      -> Detector
    data     = qexp.data.load_eval_data(cfg.data, job)                    -> EvalData
    quant    = QUANTIZERS.get(cfg.quantizer.name)()                       -> Quantizer
    deploy   = quant.quantize(job, detector, data)                        -> Deployable
    backend  = BACKENDS.get(cfg.backend.name)()                           -> Backend
    backend.run(job, deploy, data)                                        -> metrics via job

Quantizers and backends declare which axes they consume and may refuse a combination
(``check``) with a reason; the runner records it as SKIPPED without loading anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from qexp.job import Job


class Detector(Protocol):
    """One model family's uniform face: a float torch module, a decoder, an exporter."""

    name: str
    module: torch.nn.Module  # float32, eval, CPU; forward(x[B,3,H,W] RGB 0..1) -> raw tensor
    stride: int
    num_classes: int

    def raw(self, output: Any) -> torch.Tensor:
        """The single raw prediction tensor out of ``module``'s forward output."""
        ...

    def decode(self, raw: np.ndarray, nms: Any = None) -> list[np.ndarray]:
        """Raw batch output -> per image (N, 6) [x1, y1, x2, y2, conf, cls] after NMS,
        in the letterboxed input's pixel coordinates."""
        ...

    def export_onnx(
        self, module: torch.nn.Module, path: Path, imgsz: int, batch: int, **kw: Any
    ) -> Path:
        """Export ``module`` (this detector's float module or a quantized twin) to ONNX;
        ``simplify``, ``dynamic`` and ``opset`` keywords are accepted."""
        ...


class EvalData(Protocol):
    """Evaluation images with COCO ground truth, and the calibration split."""

    name: str

    def __len__(self) -> int: ...

    def batches(self, imgsz: int, batch: int, stride: int, rect: bool | None = None) -> Any:
        """Iterate ``Batch`` objects (letterboxed float32 NCHW + metadata)."""
        ...

    def calibration_samples(self, imgsz: int, num: int | None = None) -> Any:
        """Calibration images with their YOLO labels (QAT's train split)."""
        ...

    def ground_truth(self, num_classes: int) -> Any:
        """COCO ground truth checked against the model's class count."""
        ...

    def calibration(self, imgsz: int, num: int | None = None) -> list[np.ndarray]:
        """Calibration images, preprocessed like eval, each (1, 3, imgsz, imgsz) float32."""
        ...


@dataclass
class Deployable:
    """What a quantizer hands to a backend."""

    detector: Detector
    module: torch.nn.Module  # what the torch backend runs (float, or fake-quant twin)
    precision: str  # fp32 | fp16 | int8
    route: str  # float | qdq | dynamic_range | trt_builtin
    export: Callable[[Path], Path]  # writes the ONNX this route needs into a directory
    dynamic_range: Path | None = None  # JSON {onnx tensor name: amax} for route dynamic_range
    info: dict[str, Any] = field(default_factory=dict)  # quantized / ignored layer lists, ...


class Quantizer(Protocol):
    consumes: frozenset[str]  # which of observer / calibrator / ignore this quantizer reads

    def check(self, cfg: DictConfig) -> str | None:
        """A reason this combination is invalid, or None."""
        ...

    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable: ...


class Backend(Protocol):
    consumes: frozenset[str]

    def check(self, cfg: DictConfig) -> str | None:
        """A reason to SKIP (route unsupported, library missing), or None."""
        ...

    def run(self, job: Job, deploy: Deployable, data: EvalData) -> None:
        """Measure accuracy/latency; report through ``job.log_metrics`` / ``job.add_artifact``."""
        ...
