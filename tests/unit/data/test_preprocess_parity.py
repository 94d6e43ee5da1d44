"""qexp's letterboxed batches are pixel-identical to ultralytics' own validation dataset."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.data.conftest import N_SMALL, ultralytics_layout


def _ultralytics_dataset(txt, imgsz: int, batch: int, rect: bool):
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.utils import DEFAULT_CFG

    cfg = get_cfg(DEFAULT_CFG, {"imgsz": imgsz, "rect": rect, "task": "detect"})
    data = {"names": {i: str(i) for i in range(80)}, "nc": 80, "channels": 3}
    return build_yolo_dataset(cfg, str(txt), batch, data, mode="val", rect=rect, stride=32)


@pytest.mark.parametrize(
    ("imgsz", "batch", "rect"),
    [(640, 1, True), (640, 4, True), (640, 2, False), (320, 3, True)],
    ids=["640-b1-rect", "640-b4-rect", "640-b2-square", "320-b3-rect"],
)
def test_batches_equal_ultralytics_val_dataset(tmp_path, assets, small_data, imgsz, batch, rect):
    ds = _ultralytics_dataset(ultralytics_layout(tmp_path, assets, N_SMALL), imgsz, batch, rect)
    ours = list(small_data.batches(imgsz, batch, 32, rect=rect))
    flat = [(b, i) for b in ours for i in range(len(b.items))]
    assert len(flat) == len(ds) == N_SMALL
    for k, (b, i) in enumerate(flat):
        ref = ds[k]
        assert (
            b.items[i].path.name == ref["im_file"].rsplit("/", 1)[-1]
        )  # same (aspect-sorted) order
        want = ref["img"].numpy()  # CHW uint8 RGB
        got = np.rint(b.images[i] * 255).astype(np.uint8)
        assert got.shape == want.shape
        assert np.array_equal(got, want)
        (gh, gw), pad = b.ratio_pad[i]
        (rgh, rgw), rpad = ref["ratio_pad"]
        assert (gh, gw) == pytest.approx((rgh, rgw), rel=1e-12)
        assert tuple(pad) == tuple(rpad)
        assert b.items[i].hw == tuple(ref["ori_shape"])


def test_rect_shapes_follow_aspect_ratio(small_data):
    for b in small_data.batches(640, 4, 32, rect=True):
        h, w = b.shape
        assert h % 32 == 0 and w % 32 == 0 and max(h, w) <= 640 + 32
        for it in b.items:  # every image fits its batch shape without upscaling
            r = min(640 / max(it.hw), 1.0)
            assert it.hw[0] * r <= h and it.hw[1] * r <= w


def test_scale_boxes_undoes_the_letterbox(small_data):
    from qexp.data.preprocess import scale_boxes

    b = next(iter(small_data.batches(640, 1, 32, rect=False)))
    (gh, gw), (pw, ph) = b.ratio_pad[0]
    h, w = b.items[0].hw
    orig = np.array([[10.0, 20.0, w - 5.0, h - 7.0]], np.float32)
    boxed = orig * [gw, gh, gw, gh] + [pw, ph, pw, ph]
    np.testing.assert_allclose(scale_boxes(boxed, b.ratio_pad[0], (h, w)), orig, atol=1e-3)
