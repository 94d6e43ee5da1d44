"""Reading a Q/DQ ONNX the way TensorRT groups it: tensors joined through the layers a
per-tensor quantizer commutes with, and the scales of the QuantizeLinear nodes on them.
Independent of qexp.quant.qdq_rules (which reads the torch model), so tests can check one
against the other."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

# ONNX ops whose output holds (a subset or a copy of) the values of their data input(s)
COMMUTING = {"Concat", "Split", "Slice", "MaxPool", "Resize", "Reshape", "Transpose",
             "Identity", "Flatten", "Squeeze", "Unsqueeze"}  # fmt: skip


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    vals = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            vals[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type == "Identity" and n.input[0] in vals:
            vals[n.output[0]] = vals[n.input[0]]
    return vals


def components(model: onnx.ModelProto) -> dict[str, str]:
    """tensor name -> its component's root, tensors joined through COMMUTING ops."""
    consts = constants(model)
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        parent.setdefault(t, t)
        while parent[t] != t:
            t = parent[t] = parent[parent[t]]
        return t

    for n in model.graph.node:
        if n.op_type not in COMMUTING:
            continue
        data = n.input if n.op_type == "Concat" else n.input[:1]
        tensors = [t for t in [*data, *n.output] if t and t not in consts]
        for t in tensors[1:]:
            parent[find(t)] = find(tensors[0])
    return {t: find(t) for t in list(parent)}


def activation_scales(model: onnx.ModelProto) -> list[tuple[str, float]]:
    """(input tensor, scale) of every QuantizeLinear on an activation, in graph order."""
    consts = constants(model)
    return [
        (n.input[0], float(consts[n.input[1]].reshape(())))
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in consts
    ]


def scales_by_component(model: onnx.ModelProto) -> dict[str, set[float]]:
    """component root -> the distinct scales of the activation Q nodes reading its tensors."""
    comp = components(model)
    out: dict[str, set[float]] = defaultdict(set)
    for tensor, scale in activation_scales(model):
        out[comp.get(tensor, tensor)].add(scale)
    return dict(out)


def concat_components(model: onnx.ModelProto) -> set[str]:
    comp = components(model)
    return {comp[n.output[0]] for n in model.graph.node if n.op_type == "Concat"}


def residual_adds(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Add nodes with an input straight from a DequantizeLinear (a quantized identity)."""
    made_by = {o: n for n in model.graph.node for o in n.output}
    return [
        n
        for n in model.graph.node
        if n.op_type == "Add"
        and any(made_by.get(i) is not None and made_by[i].op_type == "DequantizeLinear"
                for i in n.input)
    ]  # fmt: skip
