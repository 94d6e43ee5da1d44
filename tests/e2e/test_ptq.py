"""PTQ on the real shared models: Q/DQ export that onnx.checker and ONNX Runtime accept, a
dynamic-range JSON whose names exist in the fp32 ONNX, ignore patterns on real module names."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from qexp.job import Job
from qexp.quant.export import count_qdq
from qexp.quant.ignore import IgnoreError
from qexp.registry import MODEL_FAMILIES, QUANTIZERS

pytestmark = [pytest.mark.slow, pytest.mark.assets]
IMGSZ = 320


def _setup(compose, tmp_path, *overrides):
    from qexp.data import load_eval_data

    cfg = compose(
        ["quantizer=ptq", "data=tiny", f"model.imgsz={IMGSZ}", "data.calib.num=4", *overrides]
    )
    job = Job(cfg=cfg, dir=tmp_path / "job", cache_dir=tmp_path / "cache")
    detector = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    return cfg, job, detector, load_eval_data(cfg.data, job)


def test_yolov8n_qdq_and_dynamic_range(compose, tmp_path):
    cfg, job, det, data = _setup(compose, tmp_path, "model=yolov8n", "observer=percentile")
    deploy = QUANTIZERS.build(job.settings.quantizer).quantize(job, det, data)
    assert len(deploy.info["quantized"]) == 63 and deploy.info["ignored"] == []
    assert deploy.info["float_by_design"] == ["model.22.dfl.conv"]
    path = deploy.export(tmp_path / "qdq")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    n = count_qdq(model)
    assert n["QuantizeLinear"] == n["DequantizeLinear"] == 2 * 63 + 6  # + 6 residual adds
    x = data.calibration(IMGSZ, 1)[0]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = det.raw(deploy.module(torch.from_numpy(x))).numpy()
    cos = float(np.dot(got.ravel(), want.ravel()) / np.linalg.norm(got) / np.linalg.norm(want))
    assert cos > 0.9999  # ORT runs the graph torch fake-quant computes

    cfg2, job2, _, _ = _setup(
        compose, tmp_path, "model=yolov8n", "observer=percentile", "quantizer.export=dynamic_range"
    )
    dr = QUANTIZERS.build(job2.settings.quantizer).quantize(job2, det, data)
    assert dr.info["calib_cache"] == "hit"  # the calibration pass was not repeated
    fp32_path = dr.export(tmp_path / "dr")
    fp32 = onnx.load(str(fp32_path))
    onnx.checker.check_model(fp32)
    assert count_qdq(fp32)["QuantizeLinear"] == 0
    ranges = json.loads(dr.ranges(tmp_path / "dr").read_text())
    names = {o for nd in fp32.graph.node for o in nd.output} | {i.name for i in fp32.graph.input}
    assert len(ranges) > 50 and set(ranges) <= names
    assert all(v > 0 for v in ranges.values())


def test_yolov5n_ignore_head_and_bad_pattern(compose, tmp_path):
    cfg, job, det, data = _setup(compose, tmp_path, "model=yolov5n", "ignore=head")
    deploy = QUANTIZERS.build(job.settings.quantizer).quantize(job, det, data)
    assert deploy.info["ignored"] and all(n.startswith("model.24.") for n in deploy.info["ignored"])
    assert not any(n.startswith("model.24.") for n in deploy.info["quantized"])
    path = deploy.export(tmp_path / "qdq")
    onnx.checker.check_model(onnx.load(str(path)))

    cfg, job, det, data = _setup(compose, tmp_path, "model=yolov5n", "ignore.patterns=[model.42.*]")
    with pytest.raises(IgnoreError, match=r"model\.42\.\*.*close names: model\.(2|4)"):
        QUANTIZERS.build(job.settings.quantizer).quantize(job, det, data)
