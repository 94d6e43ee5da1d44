"""The pre-build check's graph side (no TensorRT here): which Q/DQ pairs a graph has, what
removing them leaves (checked with ONNX Runtime), and the bisection to a set of pairs.

The fixture is the C2PSA block (model.10) of qexp's yolo11n Q/DQ export, cut out with
onnx.utils.Extractor: TensorRT 8.6.0 refused the whole graph at one pair of it (the depthwise
positional-encoding conv fed by a Reshape). tests/gpu/test_precheck_gpu.py asks the real
TensorRT about the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from qexp.backends import trt_precheck as pc

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "qdq" / "yolo11n_c2psa_qdq.onnx"
PE = "/model.10/m/m.0/attn/pe/conv/input_quantizer/QuantizeLinear"


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def test_pairs_name_their_layer_and_pattern():
    pairs = {p.q: p for p in pc.activation_pairs(onnx.load(str(FIXTURE)))}
    assert len(pairs) == 7  # 14 QuantizeLinear: 7 on activations, 7 on weights
    pe = pairs[PE]
    assert pe.layer == "model.10.m.0.attn.pe.conv"
    assert pe.pattern == "Reshape -> Q/DQ -> Conv"
    assert pairs["/model.10/cv1/conv/input_quantizer/QuantizeLinear"].producer == "input"


def test_without_reads_the_float_tensor():
    model = onnx.load(str(FIXTURE))
    pairs = pc.activation_pairs(model)
    x = np.random.RandomState(0).rand(1, 256, 20, 20).astype(np.float32)
    ref = _run(model, x)
    one = pc.without(model, [p for p in pairs if p.q == PE])
    onnx.checker.check_model(one)
    assert sum(n.op_type == "QuantizeLinear" for n in one.graph.node) == 13
    got = _run(one, x)
    # one activation no longer rounded to int8: close to the Q/DQ graph, not equal
    assert got.shape == ref.shape and 0 < np.abs(got - ref).max() < 0.5 * np.abs(ref).max()
    none = pc.without(model, pairs)
    assert not any(
        n.op_type == "QuantizeLinear" and n.input[0] not in {i.name for i in none.graph.initializer}
        for n in none.graph.node
    )


def test_bisection_finds_the_needed_pairs():
    pairs = pc.activation_pairs(onnx.load(str(FIXTURE)))
    bad = {PE, pairs[1].q}
    asked: list[int] = []

    def refused_without(removed):
        asked.append(len(removed))
        return not bad <= {p.q for p in removed}

    found = pc.culprits(refused_without, pairs)
    assert {p.q for p in found} == bad
    assert len(asked) < 2 * len(pairs)  # a search, not one check per pair


def test_verdict_message_names_the_ignore_pattern():
    pairs = pc.activation_pairs(onnx.load(str(FIXTURE)))
    v = pc.Verdict(str(FIXTURE), len(pairs), accepted=False,
                   culprits=[p for p in pairs if p.q == PE], checks=[{}] * 4, seconds=31.0)  # fmt: skip
    msg = v.message()
    assert "ignore.patterns=[model.10.m.0.attn.pe.conv]" in msg
    assert "Reshape -> Q/DQ -> Conv" in msg and "backend.precheck=drop" in msg
    back = pc.Verdict.from_json(v.to_json())
    assert back.ignore_patterns() == ["model.10.m.0.attn.pe.conv"] and back.seconds == 31.0


def test_layer_of():
    assert pc.layer_of("/model.0/conv/input_quantizer/QuantizeLinear") == "model.0.conv"
    assert pc.layer_of("/model.22/cv3.2/cv3.2.2/input_quantizer/QuantizeLinear") == (
        "model.22.cv3.2.2"
    )
    # every activation pair of the fixture names a module of the block
    pairs = pc.activation_pairs(onnx.load(str(FIXTURE)))
    assert {p.layer for p in pairs} >= {"model.10.cv1.conv", "model.10.m.0.attn.qkv.conv"}
