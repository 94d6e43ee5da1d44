"""qexp's numpy-in NMS returns exactly what ultralytics' validator NMS returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qexp.eval.nms import VAL, NMSConfig, non_max_suppression


def _clustered_predictions(seed: int, batch: int = 2, nc: int = 80, n: int = 400) -> np.ndarray:
    """(B, 4 + nc, N): boxes in clusters (so NMS has work), sigmoid-like scores: most tiny."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(50, 590, (batch, 30, 2))
    pick = rng.integers(0, 30, (batch, n))
    xy = np.take_along_axis(centres, pick[..., None], 1) + rng.normal(0, 6, (batch, n, 2))
    wh = rng.uniform(10, 200, (batch, n, 2))
    cls = 1 / (1 + np.exp(-rng.normal(-10, 2.5, (batch, n, nc))))  # ~10% above conf 0.001
    return np.concatenate((xy, wh, cls), -1).transpose(0, 2, 1).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "cfg",
    [VAL, NMSConfig(conf=0.25, iou=0.45, multi_label=False), NMSConfig(max_nms=500)],
    ids=["val", "predict", "max_nms"],
)
def test_equals_ultralytics_nms(seed, cfg):
    from ultralytics.utils.nms import non_max_suppression as ul_nms

    pred = _clustered_predictions(seed)
    ours = non_max_suppression(pred, cfg)
    ref = ul_nms(
        torch.from_numpy(pred),
        cfg.conf,
        cfg.iou,
        multi_label=cfg.multi_label,
        max_det=cfg.max_det,
        max_nms=cfg.max_nms,
        max_time_img=1e9,  # no time limit: compare results, not this machine's speed
    )
    assert len(ours) == len(ref) == pred.shape[0]
    for a, b in zip(ours, ref, strict=True):
        assert a.shape[0] > 0
        np.testing.assert_array_equal(a, b.numpy())


def test_max_det_and_empty_images():
    pred = _clustered_predictions(3, batch=1)
    assert len(non_max_suppression(pred, NMSConfig(max_det=7))[0]) == 7
    empty = np.zeros((2, 84, 100), np.float32)
    out = non_max_suppression(empty)
    assert [o.shape for o in out] == [(0, 6), (0, 6)]


def test_rejects_a_wrong_layout():
    with pytest.raises(ValueError, match="batch, 4 \\+ classes, boxes"):
        non_max_suppression(np.zeros((84, 100), np.float32))
