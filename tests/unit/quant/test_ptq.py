"""The ptq quantizer end to end on a tiny net: placement, ranges, both export routes, ORT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from omegaconf import OmegaConf

from qexp.job import Job
from qexp.quant.export import count_qdq
from qexp.quant.fakequant import ActQuantizer
from qexp.quant.ptq import PTQ
from qexp.runner import combination_reason

from .conftest import ImageData, ort_run

IMGSZ = 32


def _cfg(**over):
    """A job's config by hand (the tiny net has no YAML): job.settings types it by schema."""
    cfg = OmegaConf.create(
        {
            "model": {"name": "tiny", "weights": "-", "imgsz": IMGSZ},
            "data": {"name": "x", "root": "x", "calib": {"root": "x", "images": "y", "num": 4}},
            "quantizer": {
                "name": "ptq",
                "precision": "int8",
                "export": "qdq",
                "impl": "native",
                "w_bits": 8,
                "a_bits": 8,
                "per_channel": True,
                "residual": True,
                "fold_bn": True,
            },
            "observer": {
                "name": "entropy",
                "act": "entropy",
                "weight": "minmax",
                "percentile": 99.99,
                "bins": 2048,
                "quant_bins": 128,
            },
            "ignore": {"name": "none", "patterns": [], "k": 0, "metric": "mse"},
            "calibrator": {"name": "none"},
            "backend": {"name": "onnxruntime"},
            "tracking": {"name": "none"},
        }
    )
    for k, v in over.items():
        OmegaConf.update(cfg, k, v)
    return cfg


def _job(tmp_path, cfg):
    tmp_path = tmp_path or Path("/nonexistent")
    return Job(cfg=cfg, dir=tmp_path / "job", cache_dir=tmp_path / "cache")


def _reason(**over):
    return combination_reason(_job(None, _cfg(**over)).settings)


def _quantize(job, detector, data):
    return PTQ(job.settings.quantizer).quantize(job, detector, data)


def test_check_reasons():
    assert PTQ.consumes == frozenset({"observer", "ignore"})
    assert _reason() is None
    assert "quantizer.precision=fp16" in _reason(**{"quantizer.precision": "fp16"})
    assert "activations only" in _reason(**{"observer.weight": "entropy"})
    for bits in ("quantizer.w_bits", "quantizer.a_bits"):
        why = _reason(**{"quantizer.export": "dynamic_range", bits: 4})
        assert "w_bits and a_bits must be 8" in why


def test_qdq_route(tiny_detector, tmp_path):
    job = _job(tmp_path, _cfg(**{"ignore.patterns": ["*.cls"]}))
    data = ImageData()
    deploy = _quantize(job, tiny_detector, data)
    info = deploy.info
    assert info["quantized"] == [
        "model.0.conv",
        "model.1.cv1.conv",
        "model.1.cv2.conv",
        "model.2.conv",
        "model.3.box",
    ]
    assert info["ignored"] == ["model.3.cls"] and info["float_by_design"] == ["model.3.dfl.conv"]
    assert info["residual_quantizers"] == ["model.1"]
    assert info["observer"] == {"act": "entropy", "weight": "minmax"}
    assert {"calib_s", "quantize_s"} <= set(job.metrics)
    assert deploy.route == "qdq" and deploy.precision == "int8"
    assert isinstance(deploy.module.model[1].residual_quantizer, ActQuantizer)
    # the float detector is untouched
    assert not any("Quant" in type(m).__name__ for m in tiny_detector.module.modules())

    path = deploy.export(tmp_path / "out")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    n = count_qdq(model)
    assert n["QuantizeLinear"] == n["DequantizeLinear"] == 5 * 2 + 1  # act+weight, residual
    axes = [
        a.i for nd in model.graph.node if nd.op_type == "DequantizeLinear" for a in nd.attribute
    ]
    assert 0 in axes  # per-channel weights on axis 0
    x = data.calibration(IMGSZ, 1)[0]
    with torch.no_grad():
        want = deploy.module(torch.from_numpy(x)).numpy()
        fp = tiny_detector.module(torch.from_numpy(x)).numpy()
    got = ort_run(path, x)
    np.testing.assert_allclose(got, want, atol=1e-4)  # ORT runs what torch fake-quant computes
    assert not np.allclose(want, fp, atol=1e-4)  # and that is quantized

    # a second job with another observer reuses the calibration pass
    calls = data.calls
    job2 = _job(tmp_path, _cfg(**{"observer.act": "mse"}))
    d2 = _quantize(job2, tiny_detector, data)
    assert d2.info["calib_cache"] == "hit" and data.calls == calls


def test_dynamic_range_route(tiny_detector, tmp_path):
    job = _job(tmp_path, _cfg(**{"quantizer.export": "dynamic_range", "observer.act": "minmax"}))
    data = ImageData()
    deploy = _quantize(job, tiny_detector, data)
    assert deploy.ranges is not None
    js = deploy.ranges(tmp_path / "out")  # the ranges first: they export what they belong to
    path = deploy.export(tmp_path / "out")
    assert js.exists() and js.parent == path.parent
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert count_qdq(model) == {"QuantizeLinear": 0, "DequantizeLinear": 0}
    ranges = json.loads(js.read_text())
    names = {t for nd in model.graph.node for t in nd.output} | {i.name for i in model.graph.input}
    assert ranges and set(ranges) <= names
    # the image input's range is its calibrated max, exactly what the quantizer holds
    amax0 = float(deploy.module.model[0].conv.input_quantizer.amax)
    assert ranges["images"] == pytest.approx(amax0, rel=1e-6)
    # the fp32 ONNX is the float model
    x = data.calibration(IMGSZ, 1)[0]
    with torch.no_grad():
        fp = tiny_detector.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_run(path, x), fp, atol=1e-4)
