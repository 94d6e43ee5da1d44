"""Both families load the real checkpoints into one Detector shape; export and errors are clear."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from qexp.plugins import load_plugins
from qexp.registry import MODEL_FAMILIES

load_plugins()  # the families register when their modules load
V8 = "yolov8n-coco-from-ovint8.pt"
V5 = "yolov5n-v6.1-coco.pt"


@pytest.fixture(scope="module")
def v8(request):
    from tests.conftest import ASSETS

    if not (ASSETS / "weights" / V8).exists():
        pytest.skip("shared assets not found")
    return MODEL_FAMILIES.get("ultralytics")(
        {"name": "yolov8n", "weights": str(ASSETS / "weights" / V8)}, None
    )


@pytest.fixture(scope="module")
def v5():
    from tests.conftest import ASSETS

    if not (ASSETS / "weights" / V5).exists():
        pytest.skip("shared assets not found")
    return MODEL_FAMILIES.get("yolov5")(
        {"name": "yolov5n", "weights": str(ASSETS / "weights" / V5)}, None
    )


def _plain_float_module(m: torch.nn.Module) -> None:
    assert not m.training
    assert all(p.dtype == torch.float32 for p in m.parameters())
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # fused, as validated


def test_ultralytics_family(v8):
    assert (v8.stride, v8.num_classes, v8.names[0]) == (32, 80, "person")
    _plain_float_module(v8.module)
    out = v8.module(torch.zeros(1, 3, 320, 256))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 84, 10 * 8 + 20 * 16 + 40 * 32)


def test_classic_yolov5_family(v5):
    assert (v5.stride, v5.num_classes, v5.names[0]) == (32, 80, "person")
    _plain_float_module(v5.module)
    out = v5.module(torch.zeros(2, 3, 320, 256))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3 * (10 * 8 + 20 * 16 + 40 * 32), 85)
    head = v5.module.model[-1]
    # anchors in stride units: the v6.1 P3 anchors (10,13) (16,30) (33,23) over stride 8
    np.testing.assert_allclose(head.anchors[0].numpy() * 8, [[10, 13], [16, 30], [33, 23]])


def test_classic_head_runs_on_the_device_of_its_input(v5):
    """The GPU sweep's calibration moved yolov5n to cuda:0 and its head built the decode grid on
    the CPU ("Expected all tensors to be on the same device"). The meta device stands in for
    CUDA here: any tensor the head makes on the CPU fails the same way."""
    import copy

    model = copy.deepcopy(v5.module).to("meta")
    out = model(torch.zeros(1, 3, 128, 96, device="meta"))
    assert out.device.type == "meta" and out.shape == (1, 3 * (4 * 3 + 8 * 6 + 16 * 12), 85)


def test_classic_decode_multiplies_objectness_into_class_scores(v5):
    raw = np.zeros((1, 4, 85), np.float32)
    raw[0, :, :4] = [[100, 100, 50, 50], [300, 300, 40, 40], [500, 100, 30, 30], [100, 500, 20, 20]]
    raw[0, :, 4] = [0.9, 0.5, 0.0005, 1.0]  # objectness
    raw[0, :, 5 + 2] = [0.8, 0.5, 1.0, 0.0009]  # class 2 probability
    (dets,) = v5.decode(raw)
    assert dets[:, 5].tolist() == [2.0, 2.0]  # 3rd and 4th fall under conf 0.001 after the product
    np.testing.assert_allclose(dets[:, 4], [0.72, 0.25], rtol=1e-6)
    np.testing.assert_allclose(dets[0, :4], [75, 75, 125, 125])


def test_export_onnx_runs_in_onnxruntime_like_torch(v5, tmp_path):
    import onnx
    import onnxruntime as ort

    path = v5.export_onnx(v5.module, tmp_path / "m.onnx", 256, 2)
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 17
    assert {p.key: p.value for p in model.metadata_props}["qexp_family"] == "yolov5"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [2, 3, 256, 256]
    x = np.random.default_rng(0).random((2, 3, 256, 256), dtype=np.float32)
    got = sess.run(None, {"images": x})[0]
    want = v5.predict_fn()(x)
    assert np.abs(got - want).max() < 1e-2  # boxes in pixels: float32 reassociation only
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no leftovers


def test_dynamic_export_takes_other_shapes(v8, tmp_path):
    import onnxruntime as ort

    path = v8.export_onnx(v8.module, tmp_path / "d.onnx", 320, 1, dynamic=True, simplify=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"images": np.zeros((2, 3, 256, 320), np.float32)})[0]
    assert out.shape == (2, 84, 8 * 10 + 16 * 20 + 32 * 40)


def test_missing_weights_file_is_named():
    with pytest.raises(FileNotFoundError, match="/nonexistent/w.pt"):
        MODEL_FAMILIES.get("ultralytics")({"name": "x", "weights": "/nonexistent/w.pt"}, None)
    with pytest.raises(FileNotFoundError, match="/nonexistent/v5.pt"):
        MODEL_FAMILIES.get("yolov5")({"name": "x", "weights": "/nonexistent/v5.pt"}, None)


def test_offline_ultralytics_name_fails_without_downloading(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QEXP_ONLINE", raising=False)
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline.*QEXP_ONLINE=1"):
        MODEL_FAMILIES.get("ultralytics")({"name": "x", "weights": "yolov8n.pt"}, None)
    assert not (tmp_path / "yolov8n.pt").exists()


def test_architecture_yaml_builds_offline():
    det = MODEL_FAMILIES.get("ultralytics")({"name": "y", "weights": "yolov8n.yaml"}, None)
    assert det.num_classes == 80 and det.stride == 32


def test_classic_unpickler_refuses_unknown_classes():
    import io

    from qexp.models.yolov5_classic import _Unpickler

    blob = b"cmodels.experimental\nMixConv2d\n."  # GLOBAL opcode: a classic class qexp lacks
    with pytest.raises(
        pickle.UnpicklingError, match="models.experimental.MixConv2d is not supported"
    ):
        _Unpickler(io.BytesIO(blob)).load()


def test_ultralytics_checkpoint_is_not_a_classic_one(tmp_path):
    from tests.conftest import ASSETS

    if not (ASSETS / "weights" / V8).exists():
        pytest.skip("shared assets not found")
    with pytest.raises((TypeError, RuntimeError), match=V8):
        MODEL_FAMILIES.get("yolov5")({"name": "x", "weights": str(ASSETS / "weights" / V8)}, None)
