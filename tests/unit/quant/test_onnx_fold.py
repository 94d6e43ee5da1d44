"""The Q/DQ export of the real yolov8n carries no run-time shape arithmetic: C2f's chunk
becomes Slices with constant bounds (TensorRT 8.6.0 refused the traced Shape → Gather → Div
chain between a Conv and a QuantizeLinear), and nothing else changes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from qexp.backends import trt_stage
from qexp.job import Job
from qexp.models.onnx_fold import fold_static_shapes
from qexp.registry import MODEL_FAMILIES, QUANTIZERS
from tests.unit.quant.conftest import ort_run

pytestmark = pytest.mark.assets
IMGSZ = 96


@pytest.fixture(scope="module")
def qdq(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    from qexp.config_store import register_configs
    from qexp.data import load_eval_data
    from tests.conftest import CONF

    register_configs()
    d = tmp_path_factory.mktemp("fold")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["quantizer=ptq", "data=tiny", f"model.imgsz={IMGSZ}",
                                           "data.calib.num=2", f"paths.output_dir={d}"])  # fmt: skip
    job = Job(cfg=cfg, dir=d / "job", cache_dir=d / "cache")
    det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    data = load_eval_data(cfg.data, job)
    deploy = QUANTIZERS.build(job.settings.quantizer).quantize(job, det, data)
    traced = det.export_onnx(deploy.module, d / "traced.onnx", IMGSZ, 1, simplify=False)
    return Path(deploy.export(d / "out")), Path(traced), data.calibration(IMGSZ, 2)


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_the_qdq_export_has_constant_slice_bounds_and_the_same_qdq(qdq):
    folded, traced, _ = qdq
    before, after = _ops(traced), _ops(folded)
    assert before["Shape"] > 0  # what torch traces for chunk()
    assert after["Shape"] == after["Gather"] == after["Constant"] == 0
    for op in (
        "QuantizeLinear",
        "DequantizeLinear",
        "Conv",
        "Slice",
        "Sigmoid",
        "MaxPool",
        "Resize",
    ):
        assert after[op] == before[op], op
    model = onnx.load(str(folded))
    consts = {i.name for i in model.graph.initializer}
    slices = [n for n in model.graph.node if n.op_type == "Slice"]
    assert slices and all(set(n.input[1:]) <= consts for n in slices)


def test_folding_changes_no_output(qdq):
    folded, traced, images = qdq
    for x in images:
        assert np.array_equal(ort_run(folded, x), ort_run(traced, x))
    again, n = fold_static_shapes(onnx.load(str(folded)))
    assert n == 0 and len(again.graph.node) == len(onnx.load(str(folded)).graph.node)


def test_the_folded_graph_takes_tensorrts_dynamic_batch(qdq, tmp_path):
    folded, _, images = qdq
    dyn = trt_stage.dynamic_batch(folded, tmp_path / "dyn.onnx")
    both = np.concatenate(images)
    got = ort_run(dyn, both)
    for i, x in enumerate(images):
        assert np.allclose(got[i : i + 1], ort_run(folded, x), atol=1e-5)


def test_learned_scales_become_constants():
    """QAT's export computes each weight scale from its learned parameter, Clip(Abs(s), eps)/127
    (Clip's max input left empty): TensorRT 8.6.0 refused that yolov8n graph even with every
    activation Q/DQ removed (the probe that is now qexp's pre-build check, on the 4xH100 frontier). Folded, every
    Q/DQ reads constant scales and ONNX Runtime gives the same output."""
    from onnx import TensorProto

    rng = np.random.RandomState(0)
    w = numpy_helper.from_array(rng.randn(4, 3, 3, 3).astype(np.float32), "w")
    s = numpy_helper.from_array(-rng.rand(4).astype(np.float32) - 0.5, "s")  # sign learned away
    eps = numpy_helper.from_array(np.array(1e-4, np.float32), "eps")
    qmax = numpy_helper.from_array(np.array(127.0, np.float32), "qmax")
    zp = numpy_helper.from_array(np.zeros(4, np.int8), "zp")
    nodes = [
        helper.make_node("Abs", ["s"], ["s_abs"]),
        helper.make_node("Clip", ["s_abs", "eps", ""], ["s_clip"]),
        helper.make_node("Div", ["s_clip", "qmax"], ["scale"]),
        helper.make_node("QuantizeLinear", ["w", "scale", "zp"], ["wq"], axis=0),
        helper.make_node("DequantizeLinear", ["wq", "scale", "zp"], ["wdq"], axis=0),
        helper.make_node("Conv", ["x", "wdq"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "lsq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [w, s, eps, qmax, zp],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.rand(1, 3, 8, 8).astype(np.float32)
    before = _ort(model, x)
    folded, n = fold_static_shapes(model)
    assert n == 3
    inits = {i.name for i in folded.graph.initializer}
    qdq = [n for n in folded.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) == 2 and all(n.input[1] in inits for n in qdq)
    assert [n.op_type for n in folded.graph.node] == ["QuantizeLinear", "DequantizeLinear", "Conv"]
    np.testing.assert_array_equal(_ort(folded, x), before)


def _ort(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]
