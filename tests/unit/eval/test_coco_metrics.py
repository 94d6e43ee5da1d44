"""faster-coco-eval (used) agrees with pycocotools (the reference) on the same detections."""

from __future__ import annotations

import numpy as np
import pytest

from qexp.data import load_eval_data
from qexp.eval.coco_metrics import coco_map, to_coco_json
from tests.unit.data.conftest import coco_val_cfg


def _noisy_detections(gt: dict, seed: int) -> list[dict]:
    """Detections a mediocre detector would make: jittered true boxes, misses, wrong classes,
    duplicates and false positives, with scores that only loosely follow quality."""
    rng = np.random.default_rng(seed)
    cats = sorted(c["id"] for c in gt["categories"])
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    dets = []
    for a in gt["annotations"]:
        if rng.random() < 0.15:
            continue  # missed
        x, y, w, h = a["bbox"]
        for _ in range(1 + (rng.random() < 0.3)):  # sometimes a duplicate
            j = rng.normal(0, 0.08, 4)
            box = [x + j[0] * w, y + j[1] * h, w * (1 + j[2]), h * (1 + j[3])]
            cat = a["category_id"] if rng.random() > 0.1 else int(rng.choice(cats))
            dets.append(
                {
                    "image_id": a["image_id"],
                    "category_id": cat,
                    "bbox": box,
                    "score": float(rng.uniform(0.05, 1)),
                }
            )
    for img_id, (w, h) in size.items():
        for _ in range(rng.integers(0, 6)):  # false positives
            bw, bh = rng.uniform(5, w / 2), rng.uniform(5, h / 2)
            box = [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]
            dets.append(
                {
                    "image_id": img_id,
                    "category_id": int(rng.choice(cats)),
                    "bbox": box,
                    "score": float(rng.uniform(0, 0.6)),
                }
            )
    return dets


@pytest.mark.parametrize("seed", [0, 1])
def test_faster_coco_eval_agrees_with_pycocotools(assets, seed):
    data = load_eval_data(coco_val_cfg(assets))
    gt, _ = data.ground_truth(80)
    dets = _noisy_detections(gt, seed)
    fast = coco_map(gt, dets, impl="faster")
    ref = coco_map(gt, dets, impl="pycocotools")
    assert 0.2 < ref["map50_95"] < 0.9  # a non-trivial operating point
    for k in fast:
        assert fast[k] == pytest.approx(ref[k], abs=1e-4), k


def test_image_subset_is_scored_alone(assets):
    data = load_eval_data(coco_val_cfg(assets))
    gt, _ = data.ground_truth(80)
    ids = sorted(im["id"] for im in gt["images"])[:20]
    dets = [d for d in _noisy_detections(gt, 0) if d["image_id"] in ids]
    sub = coco_map(gt, dets, ids)
    whole = coco_map(gt, dets)  # the other 186 images' objects count as missed
    assert sub["map50_95"] > whole["map50_95"]


def test_no_detections_is_zero(assets):
    data = load_eval_data(coco_val_cfg(assets, max_images=3))
    gt, _ = data.ground_truth(80)
    assert coco_map(gt, [])["map50_95"] == 0.0


def test_to_coco_json_maps_back_to_original_pixels():
    ratio_pad = ((0.5, 0.5), (0, 80))  # a 1280x960 image letterboxed into 640 with 80 px on top
    dets = np.array([[100, 180, 300, 380, 0.9, 2]], np.float32)
    (d,) = to_coco_json(dets, 7, ratio_pad, (960, 1280), list(range(1, 81)))
    assert d["image_id"] == 7 and d["category_id"] == 3 and d["score"] == 0.9
    assert d["bbox"] == pytest.approx([200, 200, 400, 400])
