"""The one evaluation loop every backend uses: batches -> raw -> decode + NMS -> COCO mAP."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qexp.eval.alignment import Alignment
from qexp.eval.bootstrap import match_images
from qexp.eval.coco_metrics import coco_map, to_coco_json
from qexp.eval.nms import VAL, NMSConfig
from qexp.progress import track

if TYPE_CHECKING:
    from qexp.data import Batch, EvalDataset
    from qexp.interfaces import Detector
    from qexp.job import Job

log = logging.getLogger("qexp")

# numpy batch (B, 3, H, W) float32 RGB 0..1 -> the model's raw output as numpy
Predict = Callable[[np.ndarray], np.ndarray]


def _detections(
    detector: Detector, raw: np.ndarray, b: Batch, cats: list[int], nms: NMSConfig
) -> list[dict]:
    out: list[dict] = []
    # the Detector protocol's decode takes the raw output alone; pass NMS settings only if asked
    decoded = detector.decode(raw) if nms is VAL else detector.decode(raw, nms)  # type: ignore[call-arg]
    for dets, item, rp in zip(decoded, b.items, b.ratio_pad, strict=True):
        out += to_coco_json(dets, item.id, rp, item.hw, cats)
    return out


def evaluate(
    predict: Predict,
    detector: Detector,
    data: EvalDataset,
    imgsz: int,
    batch: int = 1,
    rect: bool = False,
    job: Job | None = None,
    *,
    reference: Predict | None = None,
    scope: str = "",
    nms: NMSConfig = VAL,
    impl: str = "faster",
) -> dict[str, Any]:
    """mAP of ``predict`` on ``data``; with ``reference``, also its mAP and the raw-output
    alignment of the two on the same batches (``align_*``; the delta is predict - reference).

    With a job, the detections (and the alignment) are saved as artifacts.
    """
    gt, cats = data.ground_truth(detector.num_classes)
    dets: list[dict] = []
    ref_dets: list[dict] = []
    align = Alignment() if reference is not None else None
    seen: list[int] = []
    t0 = time.perf_counter()
    n_batches = (len(data) + batch - 1) // batch
    progress = job.track if job is not None else track
    desc = f"eval {scope or 'model'} {imgsz}{' rect' if rect else ''} b{batch}"
    log.info(
        "evaluating %s on %d image%s of %s%s",
        scope or "the model",
        len(data),
        "" if len(data) == 1 else "s",
        data.name,
        " (and the torch reference, for alignment)" if reference is not None else "",
    )
    for b in progress(data.batches(imgsz, batch, detector.stride, rect), desc, total=n_batches):
        raw = np.asarray(predict(b.images))
        dets += _detections(detector, raw, b, cats, nms)
        if reference is not None and align is not None:
            ref = np.asarray(reference(b.images))
            align.update(raw, ref)
            ref_dets += _detections(detector, ref, b, cats, nms)
        seen += [it.id for it in b.items]
    if not seen:
        raise RuntimeError(f"{data.name}: no image could be evaluated")
    m = coco_map(gt, dets, seen, impl)
    res: dict[str, Any] = {
        "map50_95": m["map50_95"],
        "map50": m["map50"],
        "eval_s": time.perf_counter() - t0,
        "images": len(seen),
    }
    if reference is not None and align is not None:
        r = coco_map(gt, ref_dets, seen, impl)
        res.update(
            ref_map50_95=r["map50_95"],
            ref_map50=r["map50"],
            align_max_abs_diff=align.max_abs_diff,
            align_mean_abs_diff=align.mean_abs_diff,
            align_cosine=align.cosine,
            align_map_delta=m["map50_95"] - r["map50_95"],
        )
    if job is not None:
        suffix = f"_{scope}" if scope else ""
        path = job.path("artifacts", f"detections{suffix}.json")
        path.write_text(json.dumps(dets))
        job.add_artifact(f"detections{suffix}", path)
        # per-image COCO matches: what a paired bootstrap interval against another row needs
        matches = match_images(gt, dets, seen).save(job.path("artifacts", f"matches{suffix}.npz"))
        job.add_artifact(f"matches{suffix}", matches)
        job.info[f"eval_images{suffix}"] = len(seen)
        if reference is not None and align is not None:
            write_alignment(job, res, align, imgsz, batch, rect, scope)
    return res


def write_alignment(
    job: Job, res: dict[str, Any], align: Alignment, imgsz: int, batch: int, rect: bool, scope: str
) -> Path:
    suffix = f"_{scope}" if scope else ""
    doc = {
        "subject": scope or "model",
        "reference": "torch (the Deployable's module, float32 on CPU)",
        "images": res["images"],
        "imgsz": imgsz,
        "batch": batch,
        "rect": rect,
        "raw_output": align.as_dict(),
        "map50_95": {
            "subject": res["map50_95"],
            "reference": res["ref_map50_95"],
            "delta": res["align_map_delta"],
        },
        "map50": {
            "subject": res["map50"],
            "reference": res["ref_map50"],
            "delta": res["map50"] - res["ref_map50"],
        },
    }
    path = job.path("artifacts", f"alignment{suffix}.json")
    path.write_text(json.dumps(doc, indent=2))
    job.add_artifact(f"alignment{suffix}", path)
    return path
