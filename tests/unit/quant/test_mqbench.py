"""quantizer=ptq_mqbench on yolov8n at a small size: MQBench's observers set qexp's ranges, its
clip-range JSON is an artifact, our Q/DQ export runs in ORT like the torch model.
Skipped when MQBench is not installed (an optional extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qexp.job import Job
from qexp.quant.export import count_qdq
from qexp.quant.fakequant import quant_layers
from qexp.quant.plugins.mqbench import MQBenchPTQ
from qexp.quant.steps import float_twin
from qexp.runner import combination_reason

from .conftest import ImageData, export_and_run
from .test_ptq import _cfg

pytest.importorskip("mqbench", reason="MQBench not installed")

IMGSZ, NUM = 64, 4
V8 = "yolov8n-coco-from-ovint8.pt"


@pytest.fixture(scope="module")
def v8():
    from qexp.plugins import load_plugins
    from qexp.registry import MODEL_FAMILIES
    from tests.conftest import ASSETS as assets

    if not (assets / "weights" / V8).exists():
        pytest.skip("shared assets not found")
    load_plugins()
    return MODEL_FAMILIES.get("ultralytics")(
        {"name": "yolov8n", "weights": str(assets / "weights" / V8)}, None
    )


def _mq_cfg(**over):
    cfg = _cfg(
        **{"quantizer.name": "ptq_mqbench", "quantizer.impl": "mqbench", "observer.act": "minmax",
           "model.imgsz": IMGSZ, "model.family": "ultralytics", "data.calib.num": NUM, **over}
    )  # fmt: skip
    return cfg


def _job(cfg, directory):
    return Job(cfg=cfg, dir=directory / "job", cache_dir=directory.parent / "cache")


def _quantize(job, detector, data):
    return MQBenchPTQ(job.settings.quantizer).quantize(job, detector, data)


@torch.no_grad()
def _mqbench_observers(v8, data):
    """MQBench calibrated on its own: layer -> (input observer, weight observer)."""
    from qexp.quant.calibrate import batched
    from qexp.quant.plugins.mqbench import prepare_mqbench

    graph = prepare_mqbench(float_twin(v8.module), "minmax", "minmax", 99.99)
    for x in batched(data.calibration(IMGSZ, NUM), 16):
        graph(torch.from_numpy(x))
    out = {}
    for node in graph.graph.nodes:
        if node.op == "call_module" and hasattr(graph.get_submodule(node.target), "weight"):
            fq = graph.get_submodule(node.args[0].target).activation_post_process
            wq = graph.get_submodule(node.target).weight_fake_quant.activation_post_process
            out[node.target] = (fq, wq)
    return out


def test_mqbench_route(v8, tmp_path):
    job = _job(_mq_cfg(**{"quantizer.export": "qdq"}), tmp_path / "a")
    assert combination_reason(job.settings) is None
    data = ImageData()
    deploy = _quantize(job, v8, data)
    info = deploy.info
    assert info["impl"] == "mqbench" and info["observer"]["mqbench_act"] == "MinMaxObserver"
    assert info["float_by_design"] == ["model.22.dfl.conv"] and info["range_fallbacks"] == []
    assert info["mqbench_ranges"]["act"] == len(info["quantized"]) == 63
    assert info["mqbench_ranges"]["residual"] == 6

    # the amaxes are MQBench's min/max observers' ranges
    observers = _mqbench_observers(v8, ImageData())
    layers = quant_layers(deploy.module)
    for name in ["model.0.conv", "model.4.m.1.cv1.conv", "model.12.cv2.conv", "model.22.cv3.2.2"]:
        fq, wq = observers[name]
        assert (fq.quant_min, fq.quant_max, wq.quant_min, wq.quant_max) == (-127, 127, -127, 127)
        want = torch.maximum(-fq.min_val, fq.max_val)
        torch.testing.assert_close(layers[name].input_quantizer.amax, want, rtol=1e-6, atol=0)
        want_w = torch.maximum(-wq.min_val, wq.max_val)
        torch.testing.assert_close(layers[name].weight_quantizer.amax, want_w, rtol=1e-6, atol=0)
    block = deploy.module.get_submodule("model.4.m.1")  # identity branch = cv1's input
    assert block.residual_quantizer.amax == layers["model.4.m.1.cv1.conv"].input_quantizer.amax

    # MQBench's own clip-range JSON, named by ONNX tensor
    clip = json.loads((job.dir / job.artifacts["mqbench_clip_ranges"]).read_text())
    ranges = clip["tensorrt"]["blob_range"]
    assert len(ranges) == info["mqbench_ranges"]["clip_json_tensors"] >= 63
    assert ranges["x"] == pytest.approx(float(observers["model.0.conv"][0].max_val), rel=1e-6)
    assert all(isinstance(k, str) and v > 0 for k, v in ranges.items())

    # qexp's Q/DQ export: valid, and ORT agrees with the fake-quant torch module
    model, got, want_out = export_and_run(deploy, tmp_path / "out", data.calibration(IMGSZ, 1)[0])
    assert count_qdq(model)["QuantizeLinear"] >= 2 * 63
    assert got.shape == want_out.shape
    np.testing.assert_allclose(got, want_out, atol=1e-3)  # boxes in pixels, up to 64


def test_mqbench_cached_and_dynamic_range(v8, tmp_path):
    """A second job (another backend or export) loads MQBench's ranges and JSON from the
    cache; export=dynamic_range writes the fp32 ONNX and the ranges JSON like the native route."""
    data = ImageData()
    deploys = []
    for i, export in enumerate(["qdq", "dynamic_range"]):
        job = _job(_mq_cfg(**{"quantizer.export": export}), tmp_path / f"job{i}")
        deploys.append(_quantize(job, v8, data))
        assert (job.dir / job.artifacts["mqbench_clip_ranges"]).exists()
    assert [d.info["calib_cache"] for d in deploys] == ["miss", "hit"]
    assert data.calls == 1
    assert deploys[0].info["act_amax"] == deploys[1].info["act_amax"]
    path = deploys[1].export(tmp_path / "out")
    js = deploys[1].ranges(tmp_path / "out")
    assert path.name.endswith("_fp32.onnx") and js.exists()
    ranges = json.loads(js.read_text())
    assert len(ranges) >= 63


def test_mqbench_check_reasons(tmp_path):
    def reason(**over):
        return combination_reason(_job(_mq_cfg(**over), tmp_path).settings)

    assert "no MQBench observer" in reason(**{"observer.act": "entropy"})
    assert "per-channel" in reason(**{"quantizer.per_channel": False})
    assert "ultralytics" in reason(**{"model.family": "yolov5"})


def test_mqbench_observers_do_not_leak(v8):
    """Observer extra args (percentile's threshold) stay in their job: MQBench's default
    schemes are shared objects it would write them into."""
    from qexp.quant.plugins.mqbench import prepare_mqbench

    fmodel = float_twin(v8.module)
    kinds = {}
    for act in ["percentile", "minmax", "mse"]:
        graph = prepare_mqbench(fmodel, act, "minmax", 99.9)
        fq = graph.get_submodule("x_post_act_fake_quantizer").activation_post_process
        kinds[act] = (type(fq).__name__, getattr(fq, "threshold", None))
    assert kinds == {
        "percentile": ("EMAQuantileObserver", pytest.approx(0.999)),
        "minmax": ("MinMaxObserver", None),
        "mse": ("MSEObserver", None),
    }
