"""The architecture matrix: every YOLO detection family qexp quantizes, one small model each.

Ultralytics ships these as architecture yamls (random weights when built from them; its
``yaml_model_load`` reads ``yolov8n.yaml`` as ``yolov8.yaml`` at scale n, and ``yolov5nu`` is
the anchor-free YOLOv5 it trains as ``yolov5nu.pt``). ``yolov5n`` is qexp's classic anchor-based
YOLOv5 (``model=yolov5n``, ``family=yolov5``, real weights). One list for the CPU census
(``scripts/arch_census.py``), its tests and the GPU matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Arch:
    name: str
    weights: str  # an ultralytics architecture yaml, or "" for the conf/model choice
    blocks: str  # what sets it apart for quantization

    @property
    def overrides(self) -> list[str]:
        """The Hydra overrides that select it."""
        if not self.weights:
            return [f"model={self.name}"]
        return [f"model.weights={self.weights}", f"model.name={self.name}"]


MATRIX = (
    Arch("yolov5n", "", "classic YOLOv5 (anchors, objectness; qexp's yolov5 family)"),
    Arch("yolov5nu", "yolov5nu.yaml", "C3, SPPF, anchor-free Detect"),
    Arch("yolov6n", "yolov6n.yaml", "RepVGG-style convs, ConvTranspose upsampling"),
    Arch("yolov8n", "yolov8n.yaml", "C2f, SPPF, Detect + DFL"),
    Arch("yolov9t", "yolov9t.yaml", "RepNCSPELAN4 (ELAN), ADown (avg/max pool)"),
    Arch("yolo11n", "yolo11n.yaml", "C3k2, C2PSA attention, depthwise convs in the head"),
    Arch("yolo12n", "yolo12n.yaml", "A2C2f area attention"),
    Arch("yolov10n", "yolov10n.yaml", "SCDown, C2fCIB, PSA; v10Detect (NMS-free)"),
    Arch("yolo26n", "yolo26n.yaml", "C3k2 + attention, end2end Detect without DFL (NMS-free)"),
)


def by_name(name: str) -> Arch:
    for a in MATRIX:
        if a.name == name or a.weights == name or Path(a.weights).stem == name:
            return a
    raise KeyError(
        f"unknown architecture {name!r}; the matrix: {', '.join(a.name for a in MATRIX)}"
    )
