"""model.split_c2f: C2f's cv1 chunk as two convolutions. The fp32 ONNX computes the same
outputs on ONNX Runtime as the original (yolov8n's real weights, YOLO11's C3k2 from its yaml),
without the Slices the chunk made; the option is hashed only when on."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from qexp.models.split_c2f import SplitConv, split_c2f
from qexp.plugins import load_plugins
from qexp.registry import MODEL_FAMILIES

load_plugins()
IMGSZ = 320


def _run(path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _slices_of_cv1(path) -> int:
    """Slice/Split nodes reading a C2f's cv1 output (the chunk the rewrite removes)."""
    m = onnx.load(str(path))
    return sum(
        n.op_type in ("Slice", "Split") and "/cv1/" in n.input[0] and "/m." not in n.input[0]
        for n in m.graph.node
    )


def _image(assets) -> np.ndarray:
    from PIL import Image

    path = sorted((assets / "coco128" / "images" / "train2017").glob("*.jpg"))[0]
    img = Image.open(path).convert("RGB").resize((IMGSZ, IMGSZ))
    return np.ascontiguousarray(np.asarray(img, np.float32).transpose(2, 0, 1)[None] / 255.0)


@pytest.mark.assets
@pytest.mark.parametrize(
    ("weights", "blocks"),
    [("{assets}/weights/yolov8n-coco-from-ovint8.pt", 8), ("yolo11n.yaml", 9)],
    ids=["yolov8n", "yolo11n"],
)
def test_the_split_onnx_computes_what_the_original_computes(assets, tmp_path, weights, blocks):
    det = MODEL_FAMILIES.get("ultralytics")(
        {"name": "m", "weights": weights.format(assets=assets)}, None
    )
    x = _image(assets)
    before = det.export_onnx(det.module, tmp_path / "before.onnx", IMGSZ)
    with torch.no_grad():
        want_torch = det.raw(det.module(torch.from_numpy(x))).numpy()
    split = split_c2f(det.module)  # the same random weights for the yaml model
    assert len(split) == blocks  # yolov8n: 8 C2f; yolo11n: 8 C3k2 + 1 C2PSA
    after = det.export_onnx(det.module, tmp_path / "after.onnx", IMGSZ)
    assert _slices_of_cv1(before) >= blocks and _slices_of_cv1(after) == 0
    want, got = _run(before, x), _run(after, x)
    # A convolution's output channels are independent dot products over the same inputs in
    # the same order, whichever subset of filters one convolution holds: bit-exact.
    assert np.array_equal(want, got), float(np.abs(want - got).max())
    with torch.no_grad():
        got_torch = det.raw(det.module(torch.from_numpy(x))).numpy()
    assert np.array_equal(want_torch, got_torch)


@pytest.mark.assets
def test_the_option_splits_the_loaded_model(assets):
    weights = str(assets / "weights" / "yolov8n-coco-from-ovint8.pt")
    det = MODEL_FAMILIES.get("ultralytics")({"name": "m", "weights": weights, "split_c2f": True})
    cv1s = [m.cv1 for m in det.module.modules() if hasattr(m, "cv1") and hasattr(m, "m")]
    assert sum(isinstance(c, SplitConv) for c in cv1s) == 8
    # the halves keep cv1's module path as a prefix: ignore globs like model.2.cv1.* still match
    names = [n for n, m in det.module.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert "model.2.cv1.a.conv" in names and "model.2.cv1.b.conv" in names
    assert split_c2f(det.module) == []  # already split: nothing twice


def test_the_option_is_hashed_only_when_on(compose):
    from qexp.runner import config_hash

    base = config_hash(compose([]))
    assert config_hash(compose(["model.split_c2f=false"])) == base
    assert config_hash(compose(["model.split_c2f=true"])) != base
