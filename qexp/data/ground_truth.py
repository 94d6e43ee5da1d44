"""Ground truth as a COCO dict: read from an instances json, or built from YOLO txt labels.

The class index -> COCO category id map lives here, with the data: for a COCO json it is the
sorted category ids (for COCO itself, the standard 80 -> 91 map); for YOLO labels, index + 1
(ultralytics does the same when it scores a custom dataset with COCO metrics).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("qexp")


class LabelError(ValueError):
    """Labels that cannot be scored against this model (bad file, class out of range)."""


def load_coco_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotations not found: {path}")
    with open(path) as f:
        d = json.load(f)
    for key in ("images", "annotations", "categories"):
        if key not in d:
            raise LabelError(f"{path}: not a COCO instances json (no {key!r})")
    return d


def category_map(gt: dict) -> list[int]:
    """Class index -> category id: the json's category ids in ascending order."""
    return sorted(int(c["id"]) for c in gt["categories"])


def subset(gt: dict, image_ids: set[int]) -> dict:
    """The same ground truth restricted to ``image_ids`` (what was actually evaluated)."""
    return {
        **gt,
        "images": [im for im in gt["images"] if im["id"] in image_ids],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in image_ids],
    }


def read_yolo_labels(path: Path) -> np.ndarray:
    """(n, 5) float32 [cls, cx, cy, w, h] normalised; empty when the file does not exist."""
    if not path.exists():
        return np.zeros((0, 5), np.float32)
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        arr = np.array([[float(v) for v in r[:5]] for r in rows], np.float32).reshape(-1, 5)
    except ValueError as e:
        raise LabelError(f"{path}: unreadable YOLO label file ({e})") from None
    if any(len(r) != 5 for r in rows):
        # segment polygons: ultralytics turns them into boxes; a detection eval takes the box
        arr = np.array([_row_to_box(r, path) for r in rows], np.float32).reshape(-1, 5)
    if len(arr) and (arr[:, 0] < 0).any():
        raise LabelError(f"{path}: negative class index")
    return arr


def _row_to_box(row: list[str], path: Path) -> list[float]:
    vals = [float(v) for v in row]
    if len(vals) == 5:
        return vals
    if len(vals) < 7 or len(vals) % 2 == 0:
        raise LabelError(f"{path}: a row with {len(vals)} values is neither a box nor a polygon")
    xy = np.array(vals[1:]).reshape(-1, 2)
    (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
    return [vals[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


def yolo_to_coco(
    images: list[tuple[int, str, tuple[int, int]]],
    labels: list[np.ndarray],
    num_classes: int,
    label_files: list[Path],
) -> dict:
    """A COCO dict from YOLO labels. ``images``: (id, file_name, (h, w)) per image."""
    anns: list[dict] = []
    for (img_id, _, (h, w)), lab, lf in zip(images, labels, label_files, strict=True):
        if len(lab) and lab[:, 0].max() >= num_classes:
            bad = int(lab[:, 0].max())
            raise LabelError(
                f"{lf}: class {bad} but the model has {num_classes} classes "
                "(labels do not match the class count)"
            )
        for c, cx, cy, bw, bh in lab.tolist():
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": int(c) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    return {
        "images": [{"id": i, "file_name": f, "height": h, "width": w} for i, f, (h, w) in images],
        "annotations": anns,
        "categories": [{"id": i + 1, "name": str(i)} for i in range(num_classes)],
    }
