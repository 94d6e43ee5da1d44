"""The one Detector shape every family returns (see :class:`qexp.interfaces.Detector`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qexp.eval.nms import VAL, NMSConfig, nms_free, non_max_suppression
from qexp.interfaces import Detector
from qexp.models.export import export_onnx


def to_ultralytics_layout(raw: np.ndarray) -> np.ndarray:
    """Identity: raw is already (B, 4 + nc, N) [cx, cy, w, h, class probabilities]."""
    return raw


@dataclass
class YoloDetector:
    """A float module whose forward returns one decoded tensor, plus its NMS and exporter.

    ``layout`` turns the raw tensor into ultralytics' (B, 4 + nc, N) so that every family
    shares one NMS (anchor-based YOLOv5 multiplies objectness into the class scores there).
    ``nms_free``: the module's head is one-to-one (YOLOv10, YOLO26 end-to-end) and returns
    (B, max_det, 6) boxes already chosen, which are only filtered by score, never NMS'd.
    """

    name: str
    module: torch.nn.Module
    stride: int
    num_classes: int
    names: list[str] = field(default_factory=list)
    weights: str = ""
    family: str = ""
    layout: Callable[[np.ndarray], np.ndarray] = to_ultralytics_layout
    info: dict[str, Any] = field(default_factory=dict)
    nms_free: bool = False

    def raw(self, output: Any) -> torch.Tensor:
        """The prediction tensor out of a forward output (a tensor, or (tensor, extras))."""
        while isinstance(output, (tuple, list)):
            output = output[0]
        return output

    def decode(self, raw: np.ndarray, nms: NMSConfig = VAL) -> list[np.ndarray]:
        """Raw batch -> per image (K, 6) [x1, y1, x2, y2, conf, cls], letterboxed-input pixels."""
        if self.nms_free:
            return nms_free(np.asarray(raw), nms)
        return non_max_suppression(self.layout(np.asarray(raw)), nms)

    def export_onnx(
        self, module: torch.nn.Module, path: Path, imgsz: int, batch: int = 1, **kw: Any
    ) -> Path:
        """``module`` (this float module or a quantized twin) -> ONNX; see models.export."""
        meta = {
            "qexp_family": self.family,
            "qexp_stride": str(self.stride),
            "qexp_nc": str(self.num_classes),
        }
        if self.nms_free:  # a reader of the ONNX must not run NMS on its (B, K, 6) output
            meta["qexp_nms_free"] = "true"
        return export_onnx(
            module, path, imgsz, batch, metadata={**meta, **kw.pop("metadata", {})}, **kw
        )

    def predict_fn(
        self, module: torch.nn.Module | None = None
    ) -> Callable[[np.ndarray], np.ndarray]:
        """numpy batch -> numpy raw output through ``module`` (default: the float module)."""
        return torch_predict(self, self.module if module is None else module)


def torch_predict(
    detector: Detector, module: torch.nn.Module
) -> Callable[[np.ndarray], np.ndarray]:
    """numpy batch -> numpy raw output of ``module`` (any Detector's module or quantized twin)."""

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return detector.raw(module(torch.from_numpy(x))).float().numpy()

    return predict


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """Read a key from a DictConfig, a dataclass or a dict alike."""
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    try:
        return cfg.get(key, default)  # DictConfig
    except AttributeError:
        return getattr(cfg, key, default)
