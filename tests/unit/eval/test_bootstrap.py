"""The paired bootstrap of ΔmAP50-95 on real detections (tests/fixtures/detections_yolov8n_320):
its per-image matches give COCO's mAP exactly, a resample weighted from them equals COCO's
mAP on the resampled images, and the interval behaves as an interval."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from qexp.data import load_eval_data
from qexp.eval.bootstrap import Matches, _map, match_images, paired_delta
from qexp.eval.coco_metrics import coco_map
from tests.conftest import ASSETS
from tests.unit.data.conftest import coco_val_cfg

FIXTURES = Path(__file__).parents[2] / "fixtures" / "detections_yolov8n_320"


@pytest.fixture(scope="module")
def scored():
    if not ASSETS.exists():
        pytest.skip(f"shared assets not found at {ASSETS}")
    gt, _ = load_eval_data(coco_val_cfg(ASSETS)).ground_truth(80)
    ids = sorted(im["id"] for im in gt["images"])
    dets = {}
    for name in ("fp32", "ptq_minmax"):
        with gzip.open(FIXTURES / f"{name}.json.gz", "rt") as f:
            dets[name] = json.load(f)
    return gt, ids, dets


@pytest.mark.parametrize("name", ["fp32", "ptq_minmax"])
def test_matches_give_the_coco_map(scored, name, tmp_path):
    gt, ids, dets = scored
    m = match_images(gt, dets[name], ids)
    fast = coco_map(gt, dets[name], ids)["map50_95"]
    ref = coco_map(gt, dets[name], ids, impl="pycocotools")["map50_95"]
    assert 0.2 < fast < 0.4
    assert m.map50_95() == pytest.approx(fast, abs=1e-12)
    assert m.map50_95() == pytest.approx(ref, abs=1e-12)
    again = Matches.load(m.save(tmp_path / "m.npz"))
    assert again.map50_95() == m.map50_95()


@pytest.mark.parametrize("ties", [False, True])
def test_a_weighted_resample_is_coco_on_the_resampled_images(scored, ties):
    """Draw images with replacement, rename each copy, score the copies with COCO: the same
    number as the matches weighted by how often each image was drawn. Exactly so where no two
    detections share a score; the detections' 5-decimal scores do tie, and COCO then orders
    the copies among the tied ones differently, which moves mAP by about 1e-5."""
    gt, ids, dets = scored
    found_dets = [dict(r) for r in dets["ptq_minmax"]]
    if not ties:
        for k, r in enumerate(found_dets):
            r["score"] += 1e-7 * k / len(found_dets)
    rng = np.random.default_rng(3)
    draw = rng.choice(ids, 120, replace=True)
    anns = {i: [] for i in ids}
    for a in gt["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    found = {i: [] for i in ids}
    for r in found_dets:
        found[r["image_id"]].append(r)
    images, boxes, results = [], [], []
    by_id = {im["id"]: im for im in gt["images"]}
    for j, i in enumerate(draw):
        new = 10_000_000 + j
        images.append({**by_id[i], "id": new})
        boxes += [{**a, "image_id": new, "id": len(boxes) + k + 1} for k, a in enumerate(anns[i])]
        results += [{**r, "image_id": new} for r in found[i]]
    copy = {**gt, "images": images, "annotations": boxes}
    expected = coco_map(copy, results)["map50_95"]
    m = match_images(gt, found_dets, ids)
    weights = np.array([[np.sum(draw == i) for i in m.image_ids]], float)
    assert _map(m, weights)[0] == pytest.approx(expected, abs=1e-4 if ties else 1e-12)


def test_the_paired_interval(scored):
    gt, ids, dets = scored
    fp32, ptq = (match_images(gt, dets[n], ids) for n in ("fp32", "ptq_minmax"))
    d = paired_delta(ptq, fp32, resamples=200, seed=0)
    assert d.delta == pytest.approx(ptq.map50_95() - fp32.map50_95(), abs=1e-12)
    assert d.lo < d.delta < d.hi
    assert d.hi - d.lo < 0.05  # paired: far narrower than either row's own spread
    assert (d.images, d.resamples) == (len(ids), 200)
    assert paired_delta(ptq, fp32, resamples=200, seed=0) == d  # seeded: reproducible
    same = paired_delta(fp32, fp32, resamples=50)
    assert (same.delta, same.lo, same.hi) == (0.0, 0.0, 0.0) and same.within_noise()
    assert d.crosses(-d.delta) and not d.crosses(1.0)


def test_rows_on_other_images_have_no_paired_interval(scored):
    gt, ids, dets = scored
    full = match_images(gt, dets["fp32"], ids)
    half = match_images(gt, dets["fp32"], ids[: len(ids) // 2])
    with pytest.raises(ValueError, match="different images"):
        paired_delta(full, half)
