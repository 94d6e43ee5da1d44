"""Client-side staging: the dynamic batch axis (checked with ONNX Runtime), eval images as exact
uint8 and the predict_fn that hands the engine's rows back to the shared evaluation loop."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from qexp.backends import trt_stage as stage
from qexp.models.export import export_onnx


class HeadNet(nn.Module):
    """Reshapes as YOLO heads trace them at a static batch: view(b, c, -1), view(b, 4, 4, -1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        b = y.shape[0]
        flat = y.view(b, 16, -1)
        box = flat.view(b, 4, 4, -1).softmax(2).sum(2)
        return torch.cat([box, flat[:, 4:]], 1)


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})[0]


def test_dynamic_batch_matches_per_image_runs(tmp_path):
    src = export_onnx(HeadNet().eval(), tmp_path / "static.onnx", 64, 1, simplify=False)
    assert stage.static_batch(src) == 1
    dst = stage.dynamic_batch(src, tmp_path / "dyn.onnx")
    assert stage.static_batch(dst) == -1
    x = np.random.RandomState(0).rand(3, 3, 64, 64).astype(np.float32)
    with pytest.raises(Exception):  # noqa: B017 - the static graph refuses batch 3
        _run(src, x)
    per_image = np.concatenate([_run(src, x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(_run(dst, x), per_image, rtol=0, atol=1e-6)
    assert stage.dynamic_batch(dst, tmp_path / "again.onnx").exists()  # already dynamic: a copy


class AreaNet(nn.Module):
    """yolo12's area attention: the areas of an image folded into the batch, view(b * 4, ...),
    the folded tensor split into heads, view(b * 4, n, heads, d), then back. TensorRT refused
    yolo12n at batch 32 with the batch-1 constant (4, 64, 8), then (the Q/DQ graph, the heads'
    reshape of a tensor whose leading dim was already 4 at batch 1) with (4, 400, 2, 96)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)

    def forward(self, x):
        y = self.conv(x)  # (b, 8, 16, 16)
        b, c, h, w = y.shape
        areas = y.flatten(2).transpose(1, 2).reshape(b * 4, h * w // 4, c)
        # an op between the two reshapes (a Q/DQ pair in qexp's export) keeps them apart
        heads = areas.sigmoid().reshape(b * 4, h * w // 4, 2, c // 2)
        mixed = (heads.softmax(1) * heads).reshape(b * 4, h * w // 4, c)
        return mixed.reshape(b, h * w, c).transpose(1, 2)


def test_dynamic_batch_keeps_areas_folded_into_the_batch(tmp_path):
    src = export_onnx(AreaNet().eval(), tmp_path / "static.onnx", 32, 1)  # folded, as qexp exports
    dst = stage.dynamic_batch(src, tmp_path / "dyn.onnx")
    x = np.random.RandomState(0).rand(3, 3, 32, 32).astype(np.float32)
    per_image = np.concatenate([_run(src, x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(_run(dst, x), per_image, rtol=0, atol=1e-6)


class UpsampleNet(nn.Module):
    """Classic YOLOv5's neck: nn.Upsample, which a static export writes as Resize with constant
    sizes (1, C, 2H, 2W), then a Concat with the skip branch."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, 2, 1)
        # as pickled in the v6.1 checkpoint: recompute_scale_factor makes torch export sizes
        self.up = nn.Upsample(scale_factor=2, mode="nearest", recompute_scale_factor=True)

    def forward(self, x):
        return torch.cat([self.up(self.down(x)), x], 1)


def test_dynamic_batch_rewrites_resize_sizes_to_scales(tmp_path):
    """The 4xH100 frontier's yolov5n engines failed at batch 32 (the Resize kept batch 1)."""
    import onnx

    src = export_onnx(
        UpsampleNet().eval(), tmp_path / "static.onnx", 32, 1
    )  # folded, as qexp exports
    resize = [n for n in onnx.load(str(src)).graph.node if n.op_type == "Resize"]
    assert resize and len(resize[0].input) == 4 and resize[0].input[3]  # sizes, as exported
    dst = stage.dynamic_batch(src, tmp_path / "dyn.onnx")
    resize = [n for n in onnx.load(str(dst)).graph.node if n.op_type == "Resize"]
    assert len(resize[0].input) == 3  # scales only
    x = np.random.RandomState(0).rand(4, 3, 32, 32).astype(np.float32)
    per_image = np.concatenate([_run(src, x[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(_run(dst, x), per_image, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_dynamic_batch_on_the_real_yolov8n(assets, tmp_path):
    from qexp.models.ultralytics_family import ultralytics_family

    det = ultralytics_family(
        {"name": "yolov8n", "family": "ultralytics", "imgsz": 320,
         "weights": str(assets / "weights" / "yolov8n-coco-from-ovint8.pt")}
    )  # fmt: skip
    src = det.export_onnx(det.module, tmp_path / "y8n.onnx", 320, 1)
    dst = stage.dynamic_batch(src, tmp_path / "y8n_dyn.onnx")
    x = np.random.RandomState(0).rand(2, 3, 320, 320).astype(np.float32)
    per_image = np.concatenate([_run(src, x[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(_run(dst, x), per_image, rtol=0, atol=1e-4)


def test_eval_images_are_exact_uint8_and_rows_come_back_by_content(assets, tmp_path):
    from qexp.data import load_eval_data

    data = load_eval_data(
        {"name": "coco_val", "format": "coco", "root": str(assets / "coco_val"),
         "images": "images/val2017", "annotations": "annotations/instances_val2017.json",
         "max_images": 4}
    )  # fmt: skip
    path, index = stage.eval_images(data, 96, 2, tmp_path)
    stored = np.load(path)
    assert stored.dtype == np.uint8 and stored.shape == (4, 3, 96, 96)
    batches = [b.images for b in data.batches(96, 1, 32, rect=False)]
    np.testing.assert_array_equal(stored.astype(np.float32) / 255.0, np.concatenate(batches))
    raw = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 2, 3), np.float32)
    predict = stage.lookup_predict(raw, index)
    got = predict(np.concatenate(batches[::-1]))  # any order, any batching
    assert got[:, 0, 0].tolist() == [3.0, 2.0, 1.0, 0.0]
    with pytest.raises(KeyError, match="never saw"):
        predict(np.zeros((1, 3, 96, 96), np.float32))
    again, index2 = stage.eval_images(data, 96, 2, tmp_path)  # cached: not rewritten
    assert again == path and index2 == index
