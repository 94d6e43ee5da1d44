"""The contracts between the runner and its plugins.

The runner (``qexp/runner.py``) drives one job through these interfaces only, ``s`` being the
job's typed settings (``qexp.config.settings.Settings``):

    quant    = QUANTIZERS.build(s.quantizer)                             -> Quantizer
    backend  = BACKENDS.build(s.backend)                                 -> Backend
    (before anything loads: quant.output() in quant.produces, quant.check(s),
     backend.accepts the output, backend.check(s, output); else SKIPPED with the reason)
    detector = MODEL_FAMILIES.get(s.model.family)(s.model, job)          -> Detector
    data     = qexp.data.load_eval_data(s.data, job)                     -> EvalData
    deploy   = quant.quantize(job, detector, data)                       -> Deployable
    backend.run(job, deploy, data)                                       -> metrics via job

Each plugin is constructed with its own schema object; the rest of the config is
``job.settings``. What precisions and routes mean is in :mod:`qexp.contracts`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qexp.contracts import Accepts, Output

if TYPE_CHECKING:
    import torch

    from qexp.config.settings import Settings
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
    """What a quantizer hands to a backend: a model at ``precision`` by ``route`` (the pair
    the quantizer's ``output()`` promised), and how to write the files that route needs."""

    detector: Detector
    module: torch.nn.Module  # what the torch backend runs (float, or fake-quant twin)
    precision: str  # fp32 | fp16 | int8
    route: str  # float | qdq | dynamic_range | trt_builtin
    export: Callable[..., Path]  # export(dir, batch=1, dynamic=False): the ONNX the route runs
    # route dynamic_range: ranges(dir) writes the JSON {onnx tensor name: amax} that goes with
    # export(dir)'s ONNX (exporting it if needed) and returns its path; None for other routes
    ranges: Callable[[Path], Path] | None = None
    calibrator: str | None = (
        None  # route trt_builtin: TensorRT's calibrator (minmax, entropy2, ...)
    )
    info: dict[str, Any] = field(default_factory=dict)  # quantized / ignored layer lists, ...

    @property
    def output(self) -> Output:
        return Output(self.precision, self.route)


class Quantizer(Protocol):
    """Constructed with its schema object (``QUANTIZERS.register(name, schema=...)``)."""

    consumes: frozenset[str]  # which of observer / calibrator / ignore this quantizer reads
    produces: frozenset[Output]  # every (precision, route) it can make

    def output(self) -> Output:
        """The (precision, route) its config asks for (the runner checks it is in
        ``produces`` and that the backend accepts it)."""
        ...

    def check(self, s: Settings) -> str | None:
        """A reason this combination of axes cannot run (SKIPPED), or None."""
        ...

    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable: ...


class Backend(Protocol):
    """Constructed with its schema object (``BACKENDS.register(name, schema=...)``)."""

    accepts: Accepts  # the precisions and routes it runs

    def check(self, s: Settings, output: Output) -> str | None:
        """A reason to SKIP what the backend accepts in principle (a library missing, a
        TensorRT without that route), or None."""
        ...

    def run(self, job: Job, deploy: Deployable, data: EvalData) -> None:
        """Measure accuracy/latency; report through ``job.log_metrics`` / ``job.add_artifact``."""
        ...
