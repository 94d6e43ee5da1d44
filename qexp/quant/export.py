"""ONNX for the two TensorRT routes: explicit Q/DQ, and fp32 + a dynamic-range JSON.

Both come from one export of the fake-quant model. The fp32 ONNX is that Q/DQ graph with the
Q/DQ pairs removed, so every tensor a range was measured on keeps the exact name it has in the
fp32 file the JSON is applied to.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qexp.quant.fakequant import qrange


class ExportError(RuntimeError):
    """An export that cannot give the graph the route needs."""


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Name -> value of every initializer, Constant-node output and Identity of a constant
    (the TorchScript exporter de-duplicates equal constants through Identity nodes)."""
    vals = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:  # topological order: an Identity's source comes first
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    vals[node.output[0]] = numpy_helper.to_array(a.t)
        elif node.op_type == "Identity" and node.input[0] in vals:
            vals[node.output[0]] = vals[node.input[0]]
    return vals


def count_qdq(model: onnx.ModelProto) -> dict[str, int]:
    ops = [n.op_type for n in model.graph.node]
    return {
        "QuantizeLinear": ops.count("QuantizeLinear"),
        "DequantizeLinear": ops.count("DequantizeLinear"),
    }


def _dequant(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int) -> np.ndarray:
    shape = [1] * q.ndim
    if scale.ndim == 1 and scale.size > 1:
        shape[axis] = -1
    zp = np.zeros_like(scale) if zp is None else zp.astype(np.float32)
    return ((q.astype(np.float32) - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)


def strip_qdq(model: onnx.ModelProto, bits: int = 8) -> tuple[onnx.ModelProto, dict[str, float]]:
    """(the fp32 graph, {tensor name: amax}) from a Q/DQ graph.

    Activation pairs ``X -> Q -> DQ -> op`` become ``X -> op`` and record amax(X) =
    scale * qmax. Weight pairs on constants give back the float constant; a DQ over an int8
    constant (a constant-folded Q) is dequantized into a float initializer.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    consts = _constants(m)
    producer = {o: n for n in g.node for o in n.output}
    qmax = qrange(bits)[1]
    rename: dict[str, str] = {}
    drop: set[int] = set()
    ranges: dict[str, float] = {}
    new_inits = []
    for node in g.node:
        if node.op_type != "DequantizeLinear":
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        src = producer.get(node.input[0])
        if src is not None and src.op_type == "QuantizeLinear":
            x = src.input[0]
            rename[node.output[0]] = x
            drop.update({id(node), id(src)})
            if x not in consts:
                scale = consts[src.input[1]]
                if scale.size != 1:
                    raise ExportError(f"per-channel activation quantizer on {x!r}")
                amax = float(scale.reshape(())) * qmax
                ranges[x] = max(ranges.get(x, 0.0), amax)
        elif node.input[0] in consts:  # DQ(int8 constant): dequantize it now
            zp = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            w = _dequant(consts[node.input[0]], consts[node.input[1]], zp, axis)
            name = node.output[0]
            new_inits.append(numpy_helper.from_array(w, name))
            drop.add(id(node))
    kept = [n for n in g.node if id(n) not in drop]
    for n in kept:
        for i, name in enumerate(n.input):
            while name in rename:
                name = rename[name]
            n.input[i] = name
    for out in g.output:
        if out.name in rename:  # a graph output must keep its name: add an Identity
            kept.append(helper.make_node("Identity", [rename[out.name]], [out.name]))
    # drop constants nobody reads any more (Q/DQ scales and zero points)
    used = {i for n in kept for i in n.input} | {o.name for o in g.output}
    for _ in range(2):  # Identity-of-constant chains, then the Constants under them
        kept = [
            n
            for n in kept
            if n.op_type not in ("Constant", "Identity")
            or n.output[0] in used
            or n.output[0] not in consts
        ]
        used = {i for n in kept for i in n.input} | {o.name for o in g.output}
    inits = [i for i in g.initializer if i.name in used] + new_inits
    del g.node[:]
    g.node.extend(kept)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    return m, ranges


# Ops whose output holds (a subset of) the input's values: same range, both directions.
_PASS_THROUGH = {
    "MaxPool", "Resize", "Upsample", "Slice", "Split", "Reshape", "Transpose", "Identity",
    "Flatten", "Squeeze", "Unsqueeze",
}  # fmt: skip


def propagate_ranges(model: onnx.ModelProto, ranges: dict[str, float]) -> dict[str, float]:
    """Extend measured ranges across range-preserving ops (MaxPool, Resize, Slice, Split, ...)
    and Concat, as TensorRT moves Q/DQ across them, so those layers can run INT8 too."""
    out = dict(ranges)
    consts = _constants(model)
    for _ in range(4):  # a few sweeps reach the fixed point on YOLO graphs
        before = len(out)
        for n in model.graph.node:
            ins = [i for i in n.input[:1] if i and i not in consts]
            if n.op_type in _PASS_THROUGH and ins:
                known = [out[t] for t in [ins[0], *n.output] if t in out]
                if known:
                    for t in [ins[0], *n.output]:
                        out.setdefault(t, max(known))
            elif n.op_type == "Concat":
                ins = [i for i in n.input if i not in consts]
                if n.output[0] not in out and ins and all(i in out for i in ins):
                    out[n.output[0]] = max(out[i] for i in ins)
                elif n.output[0] in out:
                    for i in ins:  # one scale for all inputs: the one the consumer needs
                        out.setdefault(i, out[n.output[0]])
        if len(out) == before:
            break
    return out


def _resize_is_nearest(node: onnx.NodeProto) -> bool:
    """A nearest Resize copies values (one scale serves both sides); a linear one makes new."""
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"nearest")
    return mode == b"nearest"


def range_groups(model: onnx.ModelProto) -> list[list[str]]:
    """The tensors joined through the layers a per-tensor range commutes with, as
    :mod:`qexp.quant.qdq_rules` ties them in torch: every data input and the output of a
    Concat; the data input and the outputs of MaxPool, nearest Resize, Slice, Split and the
    reshaping ops. Groups of one are left out; constants (shapes, Slice bounds) never join."""
    consts = _constants(model)
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        parent.setdefault(t, t)
        while parent[t] != t:
            t = parent[t] = parent[parent[t]]
        return t

    for n in model.graph.node:
        if n.op_type == "Concat":
            data = list(n.input)
        elif n.op_type in _PASS_THROUGH and (n.op_type != "Resize" or _resize_is_nearest(n)):
            data = list(n.input[:1])
        else:
            continue
        tensors = [t for t in [*data, *n.output] if t and t not in consts]
        for t in tensors[1:]:
            parent[find(t)] = find(tensors[0])
    groups: dict[str, list[str]] = {}
    for t in parent:
        groups.setdefault(find(t), []).append(t)
    return [g for g in groups.values() if len(g) > 1]


def tie_ranges(model: onnx.ModelProto, ranges: dict[str, float]) -> dict[str, float]:
    """``quantizer.qdq_rules=trt`` on the dynamic-range route: every tensor of a group
    (:func:`range_groups`) that holds a measured range gets the group's one amax, the widest
    measured on it (with tied quantizers they are all equal already). TensorRT's implicit
    INT8 can then write a Concat's inputs straight into its output, run MaxPool, Slice and
    Resize in INT8 and fuse the producers' requantization, instead of copying or reformatting
    where two ranges meet; a tensor with no range would run in fp16/fp32."""
    out = dict(ranges)
    for group in range_groups(model):
        measured = [ranges[t] for t in group if t in ranges]
        if measured:
            amax = max(measured)
            out.update(dict.fromkeys(group, amax))
    return out


def write_dynamic_range(
    qdq_path: Path, fp32_path: Path, json_path: Path, bits: int = 8, tied: bool = False
) -> dict:
    """Write the fp32 ONNX and ``{tensor name: amax}`` JSON derived from a Q/DQ ONNX.
    ``tied`` (``qdq_rules=trt``): one amax per group of joined tensors (:func:`tie_ranges`);
    otherwise ranges are only carried onto unmeasured neighbours (:func:`propagate_ranges`)."""
    model = onnx.load(str(qdq_path))
    fp32, ranges = strip_qdq(model, bits)
    if not ranges:
        raise ExportError(f"{qdq_path} has no activation Q/DQ pairs to take ranges from")
    ranges = tie_ranges(fp32, ranges) if tied else propagate_ranges(fp32, ranges)
    onnx.checker.check_model(fp32)
    onnx.save(fp32, str(fp32_path))
    json_path.write_text(json.dumps(ranges, indent=1, sort_keys=True))
    return ranges
