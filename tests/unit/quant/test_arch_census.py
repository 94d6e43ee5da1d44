"""The placement census of every architecture of the matrix (scripts/arch_census.py, the
script the GPU pre-build check reads its graphs from): Q/DQ counts, the layers TensorRT's
rules leave float with their pattern, and ONNX Runtime parity with the torch fake-quant twin.
The default run holds yolo11n (the graph TensorRT 8.6 refused at one pair, issue 21); the
whole matrix is ``slow`` (about a minute and a half on one core)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qexp.backends import trt_stage
from qexp.models.architectures import MATRIX
from tests.conftest import ROOT, load_script

IMGSZ = 160
# (activation Q/DQ, weight Q/DQ, layers left float by rule), from the census at imgsz 320
EXPECTED = {
    "yolov5n": (60, 60, 0), "yolov5nu": (75, 75, 0), "yolov6n": (59, 59, 0),
    "yolov8n": (69, 63, 0), "yolov9t": (227, 185, 0), "yolo11n": (97, 86, 1),
    "yolo12n": (121, 111, 8), "yolov10n": (87, 81, 1), "yolo26n": (113, 100, 2),
}  # fmt: skip


def _script():
    return load_script("scripts/arch_census.py")


def _scoped(layer: str, node: str) -> bool:
    """Whether ONNX node ``node`` (``/model.10/m/m.0/attn/pe/conv/Conv``, the exporter's module
    scopes) is module ``layer``'s (``model.10.m.0.attn.pe.conv``): its scopes in order."""
    tokens, segs = layer.split("."), []
    for t in tokens:
        if t.isdigit() and segs:
            segs[-1] += f".{t}"
        else:
            segs.append(t)
    scopes = iter(node.split("/"))
    return all(seg in scopes for seg in segs) and node.endswith(f"/{segs[-1]}/Conv")


def _batch_agnostic(path, out) -> None:
    """The graph TensorRT gets (its batch axis made dynamic) gives at batch 3 what it gives
    image by image: every Reshape constant that baked batch 1 in was found (yolo12n's area
    attention refused at TensorRT's shape analysis when one was not)."""
    dyn = trt_stage.dynamic_batch(path, out / f"{path.stem}_dyn.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3

    def run(p, x):
        s = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        return s.run(None, {s.get_inputs()[0].name: x})[0]

    x = np.random.RandomState(0).rand(3, 3, IMGSZ, IMGSZ).astype(np.float32)
    per_image = np.concatenate([run(path, x[i : i + 1]) for i in range(3)])
    np.testing.assert_array_equal(run(dyn, x), per_image)


def _check(row: dict, out) -> None:
    assert (row["act_qdq"], row["weight_qdq"], row["float_by_rule"]) == EXPECTED[row["arch"]]
    # parity of the raw outputs (an NMS-free head's before its top-k): test_qdq_rules' cosine;
    # the median in output units (pixels, probabilities): 0.0001-0.0033 measured at 320
    assert row["ort_cosine"] > 0.9995 and row["ort_median_abs"] < 1e-2, row
    # every layer left float really has no Q/DQ on its input in the graph given to TensorRT
    m = onnx.load(str(out / row["onnx"]))
    made_by = {o: n for n in m.graph.node for o in n.output}
    for f in row["float_layers"]:
        convs = [n for n in m.graph.node if n.op_type == "Conv" and _scoped(f["layer"], n.name)]
        assert len(convs) == 1, f["layer"]
        assert all(made_by[c.input[0]].op_type != "DequantizeLinear" for c in convs)
    _batch_agnostic(out / row["onnx"], out)


@pytest.mark.assets
def test_yolo11n_leaves_exactly_the_refused_pair_float(tmp_path):
    row = _script().build("yolo11n", tmp_path, IMGSZ)
    (f,) = row["float_layers"]
    # the one pair the TensorRT 8.6 pre-build probe named on the H100 (issue 21)
    assert f["layer"] == "model.10.m.0.attn.pe.conv"
    assert f["pattern"].startswith("split -> reshape -> Q/DQ -> depthwise Conv")
    assert row["_deploy"].info["float_by_rule"] == row["float_layers"]
    # and the graph given to TensorRT says so itself
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / row["onnx"])).metadata_props}
    assert json.loads(meta["qexp_float_by_rule"]) == row["float_layers"]
    _check(row, tmp_path)


@pytest.mark.slow
@pytest.mark.assets
@pytest.mark.parametrize("arch", [a.name for a in MATRIX])
def test_architecture_census_and_parity(tmp_path, arch):
    _check(_script().build(arch, tmp_path, IMGSZ), tmp_path)


def test_the_expected_table_covers_the_matrix():
    assert set(EXPECTED) == {a.name for a in MATRIX}


H100 = ROOT / "tests" / "fixtures" / "arch_matrix_h100"


def _h100_dropped() -> dict[str, list[str]]:
    """Per architecture, the layers whose Q/DQ pair TensorRT 8.6.0's optimizer refused on an
    H100 (the pre-build check of experiment=arch_matrix, built with backend.precheck=drop;
    placement then had no view_of_shared rule)."""
    out = {}
    for p in H100.glob("*/result.json"):
        r = json.loads(p.read_text())
        pre = r["info"].get("precheck")
        if pre:
            out[r["config"]["model"]["weights"].removesuffix(".yaml")] = sorted(pre["dropped"])
    return out


def test_the_rule_counts_what_the_h100_refused():
    dropped = _h100_dropped()
    assert len(dropped) == 7  # every Q/DQ graph of the matrix but yolo12n's (not built then)
    for arch, layers in dropped.items():
        assert len(layers) == EXPECTED[arch][2], arch
    assert dropped["yolo11n"] == ["model.10.m.0.attn.pe.conv"]


@pytest.mark.slow
@pytest.mark.assets
@pytest.mark.parametrize("arch", ["yolov10n", "yolo26n"])
def test_the_rule_names_the_layers_the_h100_refused(tmp_path, arch):
    row = _script().build(arch, tmp_path, IMGSZ)
    assert sorted(f["layer"] for f in row["float_layers"]) == _h100_dropped()[arch]
