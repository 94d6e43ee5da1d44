"""model.family=ultralytics: YOLOv8 / YOLO11 / YOLOv5u checkpoints and architecture yamls."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from qexp import offline
from qexp.models.detector import YoloDetector, cfg_get
from qexp.models.safe_load import (
    TRUST,
    UnsafeCheckpointError,
    foreign_globals,
    ultralytics_unrestricted,
)
from qexp.models.split_c2f import split_c2f
from qexp.models.weights import resolve_weights
from qexp.registry import MODEL_FAMILIES

if TYPE_CHECKING:
    from qexp.job import Job

log = logging.getLogger("qexp")


def load_module(weights: str, end2end: bool | None = None) -> torch.nn.Module:
    """The fused float32 eval DetectionModel; its head returns only the decoded tensor.

    A head with a one-to-one (NMS-free) branch (YOLOv10's ``v10Detect``, YOLO26's
    ``end2end`` Detect) runs that branch unless ``end2end`` is false: its output is then
    (B, max_det, 6) [x1, y1, x2, y2, score, class], top-k of the scores, as ultralytics'
    ``nms=False`` validation and export run it; otherwise (B, 4 + nc, N) for NMS.
    """
    offline.setup()
    from ultralytics import YOLO
    from ultralytics.nn.modules import Detect, v10Detect

    path = resolve_weights(weights)
    if path.endswith((".yaml", ".yml")):
        log.warning("model %s is an architecture yaml: random weights, mAP will be ~0", path)
    elif Path(path).is_file():
        _refuse_foreign_globals(path)
    try:
        model = YOLO(path, task="detect").model
    except Exception as e:
        if "references types outside" in str(e):  # ultralytics' weights_only refusal
            _refuse_foreign_globals(path, always=True)
        raise RuntimeError(
            f"cannot load ultralytics weights {weights}: {type(e).__name__}: {e}"
        ) from e
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{weights}: not an ultralytics PyTorch checkpoint")
    head = model.model[-1]
    if type(head) not in (Detect, v10Detect):  # Segment, Pose, OBB ... subclass Detect too
        raise TypeError(
            f"{weights}: head is {type(head).__name__}; model.family=ultralytics takes detection "
            "models (Detect or v10Detect head) only"
        )
    has_one2one = getattr(head, "one2one_cv2", None) is not None
    if end2end and not has_one2one:
        raise ValueError(f"model.end2end=true: {weights} has no one-to-one (NMS-free) head")
    if has_one2one:
        # chosen before fuse(), which drops the branch not chosen
        head.end2end = has_one2one if end2end is None else end2end
    model = model.float().fuse(verbose=False).eval()  # fused as ultralytics' validator runs it
    head.export = True  # forward returns the decoded tensor alone, as in ONNX export
    for m in model.modules():
        if isinstance(m, torch.nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None  # old pickles
    return model


def _refuse_foreign_globals(path: str, always: bool = False) -> None:
    """Where ultralytics unpickles in full, refuse a file naming globals outside torch and
    ultralytics (and warn that the rest is trusted); ``always``: name why it was refused."""
    why = ultralytics_unrestricted()
    if why is None and not always:
        return  # torch.load(weights_only=True) with ultralytics' allowlist refuses them itself
    foreign = foreign_globals(path)
    if foreign:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it names {', '.join(foreign[:5])}, outside torch and "
            f"ultralytics; {TRUST}"
        )
    if why is not None:
        log.warning("%s is unpickled in full: %s; %s", path, why, TRUST)


@MODEL_FAMILIES.register("ultralytics")
def ultralytics_family(cfg_model: Any, job: Job | None = None) -> YoloDetector:
    """Load an ultralytics detection checkpoint (or yaml) as a :class:`YoloDetector`."""
    weights = str(cfg_get(cfg_model, "weights"))
    model: Any = load_module(weights, cfg_get(cfg_model, "end2end"))
    if cfg_get(cfg_model, "split_c2f"):
        split = split_c2f(model)
        if not split:
            log.warning("model.split_c2f=true: %s has no C2f-like block to split", weights)
        log.info("model.split_c2f: cv1 of %d blocks split in two convolutions", len(split))
    names = model.names
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    det = YoloDetector(
        name=str(cfg_get(cfg_model, "name") or weights),
        module=model,
        stride=int(max(int(s) for s in model.stride)),
        num_classes=int(model.model[-1].nc),
        names=names,
        weights=weights,
        family="ultralytics",
        nms_free=bool(getattr(model.model[-1], "end2end", False)),
    )
    if job is not None:
        job.info.setdefault("model_classes", det.num_classes)
    return det
