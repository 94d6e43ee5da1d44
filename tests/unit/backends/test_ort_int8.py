"""backend.int8_form=qlinear: qexp's Q/DQ export rewritten into the form ONNX Runtime runs on
its integer kernels, with qexp's weights and scales kept (tests/unit/quant's tiny net)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from qexp.backends.ort_int8 import deploy_form, silu_inputs, strip_qdq
from qexp.quant.ptq import PTQ
from tests.unit.quant.conftest import ImageData, TinyDetector, TinyYolo, ort_run, randomize_bn
from tests.unit.quant.test_ptq import IMGSZ, _cfg, _job


def _optimised(path, tmp_path) -> onnx.ModelProto:
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return onnx.load(str(tmp_path / "opt.onnx"))


def test_qlinear_form_runs_integer_convs_with_qexps_weights_and_scales(tmp_path):
    torch.manual_seed(0)
    tiny_detector = TinyDetector(randomize_bn(TinyYolo()))
    job = _job(tmp_path, _cfg(**{"ignore.patterns": ["*.cls"], "observer.act": "minmax"}))
    data = ImageData()
    deploy = PTQ(job.settings.quantizer).quantize(job, tiny_detector, data)
    qdq = deploy.export(tmp_path / "out")
    calib = data.calibration(IMGSZ, 4)
    ql = deploy_form(qdq, tmp_path / "ql.onnx", calib)

    # what ORT makes of each: the Q/DQ export keeps float convs, the deploy form does not
    before = [n.op_type for n in _optimised(qdq, tmp_path).graph.node]
    after = [n.op_type for n in _optimised(ql, tmp_path).graph.node]
    assert "QLinearConv" not in before and before.count("Conv") == 7
    assert after.count("QLinearConv") >= 4  # model.0, model.1.cv1/cv2, model.2
    assert "Conv" in after  # the ignored cls conv and the DFL stay float

    # the weights ORT runs are qexp's quantized weights; the activations qexp ranged keep
    # its scales (an S8 grid with zero point 0 is the U8 grid with zero point 128)
    float_graph, scales, quantized = strip_qdq(onnx.load(str(qdq)))
    fake = {i.name: numpy_helper.to_array(i) for i in float_graph.graph.initializer}
    g = onnx.load(str(ql)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    checked = 0
    for n in g.node:
        if n.op_type == "DequantizeLinear" and init.get(n.input[0], np.zeros(0)).dtype == np.int8:
            src = n.input[0].removesuffix("_quantized")
            if src in fake:
                q, s = init[n.input[0]].astype(np.float32), init[n.input[1]]
                w = q * s.reshape(-1, *([1] * (q.ndim - 1)))
                np.testing.assert_allclose(w, fake[src], rtol=1e-5, atol=1e-7)
                checked += 1
    assert checked >= 5
    qscale = {n.input[0]: float(init[n.input[1]]) for n in g.node if n.op_type == "QuantizeLinear"}
    kept = [x for x in scales if not x.startswith("/Slice")]  # ORT ties a slice to its input
    for x in kept:
        assert qscale[x] == np.float32(scales[x]), x
    assert len(kept) >= 4
    assert "/model.3/cls/Conv" not in quantized
    # a conv output going into a SiLU whose output qexp quantizes: [-8, 127 s], not MinMax
    silu = silu_inputs(float_graph, scales)
    assert len(silu) >= 3
    for x, (lo, hi) in silu.items():
        assert qscale[x] == pytest.approx((hi - lo) / 255, rel=1e-5)

    # conv_only: the convs on integers, SiLU and the rest in float between Q/DQ pairs
    conv = [
        n.op_type
        for n in _optimised(
            deploy_form(qdq, tmp_path / "c.onnx", calib, conv_only=True), tmp_path
        ).graph.node
    ]
    assert (
        conv.count("QLinearConv") >= 4
        and "QLinearSigmoid" not in conv
        and "QLinearSigmoid" in after
    )

    # and it computes what the fake-quant model does, up to the conv outputs it also rounds
    x = calib[0]
    want, got = ort_run(qdq, x).ravel(), ort_run(ql, x).ravel()
    cos = float(want @ got / np.linalg.norm(want) / np.linalg.norm(got))
    assert cos > 0.99
