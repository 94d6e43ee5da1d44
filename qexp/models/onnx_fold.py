"""Fold the shape arithmetic of a static-shape ONNX into constants, and nothing else.

Q/DQ exports are not run through onnxslim (a simplifier may move or fuse the Q/DQ pairs
TensorRT reads), so they keep the traced shape computations: ultralytics' C2f ``chunk`` becomes
Shape → Gather → Add → Div feeding the starts/ends of two Slices. With a static input those are
constants; left in the graph, TensorRT 8.6.0 sees a Slice whose bounds are run-time shape
tensors between a Conv and a QuantizeLinear, marks it INT8 and finds no INT8 implementation
for it ("filterQDQFormats ... node being incorrectly marked as an int8 node": every yolov8n Q/DQ
build of the 4×H100 sweep). The fp32 export, slimmed, has constant bounds and builds.

Only nodes of ``FOLDABLE`` types whose inputs are all known are evaluated (with onnx's
reference evaluator); ``Shape`` is known when its input's inferred shape is fully static.
QuantizeLinear/DequantizeLinear, convolutions and every op on activations are never touched.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

FOLDABLE = frozenset(
    {"Shape", "Gather", "Add", "Sub", "Mul", "Div", "Unsqueeze", "Squeeze", "Concat", "Cast",
     "Slice", "Range", "Floor", "Ceil", "Identity", "Constant", "ConstantOfShape",
     "ReduceProd", "Equal", "Where", "Max", "Min", "Neg", "Reshape",
     # learned (LSQ) scales: QAT exports scale = Clip(Abs(s)) / ..., computed from initializers
     "Abs", "Clip", "Round", "Reciprocal", "Sqrt", "Pow", "Exp"}
)  # fmt: skip


def static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Every tensor's inferred shape, where all its dims are known."""
    inferred = shape_inference.infer_shapes(model)
    out: dict[str, list[int]] = {}
    g = inferred.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if all(d >= 0 for d in dims):
            out[vi.name] = dims
    return out


def _evaluate(
    node: onnx.NodeProto, inputs: list[np.ndarray | None], opset: int
) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" for i in range(len(node.input))]
    renamed = helper.make_node(
        node.op_type, [n if node.input[i] else "" for i, n in enumerate(names)],
        [f"out{i}" for i in range(len(node.output))], domain=node.domain or "",
    )  # fmt: skip
    renamed.attribute.extend(node.attribute)
    graph = helper.make_graph(
        [renamed], "fold",
        [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None)
         for n, name in zip(names, node.input, strict=True) if name],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
         for o in renamed.output],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {n: x for n, x, name in zip(names, inputs, node.input, strict=True) if name}
    return list(ReferenceEvaluator(model).run(None, feeds))


def fold_static_shapes(model: onnx.ModelProto, rounds: int = 64) -> tuple[onnx.ModelProto, int]:
    """(model with shape arithmetic folded into initializers, number of nodes folded).

    Shape inference stops at a Slice whose bounds are computed, so each round folds what the
    shapes known so far allow and the next round infers past it (one C2f block a round)."""
    total = 0
    for _ in range(rounds):
        model, n = _fold_once(model)
        total += n
        if n == 0:
            break
    return model, total


def _fold_once(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    shapes = static_shapes(model)
    g = model.graph
    known: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    folded: list[onnx.NodeProto] = []
    for node in g.node:  # ONNX graphs are stored in topological order
        if node.op_type not in FOLDABLE or node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Shape":
            if node.input[0] not in shapes:
                continue
            dims = shapes[node.input[0]]
            attrs = {a.name: a.i for a in node.attribute}
            start, end = attrs.get("start", 0), attrs.get("end", len(dims))
            outs = [np.array(dims[start:end], dtype=np.int64)]
        elif all((not name) or name in known for name in node.input):
            try:
                outs = _evaluate(node, [known.get(n) for n in node.input], opset)  # '' -> None
            except Exception:  # noqa: BLE001 - an op the evaluator cannot run stays as it is
                continue
        else:
            continue
        for name, value in zip(node.output, outs, strict=True):
            known[name] = np.asarray(value)
        folded.append(node)
    if not folded:
        return model, 0
    gone = {id(n) for n in folded}
    keep = [n for n in g.node if id(n) not in gone]
    needed = {i for n in keep for i in n.input} | {o.name for o in g.output}
    produced = {o for n in folded for o in n.output}
    have = {i.name for i in g.initializer}
    for name in sorted((needed & produced) - have):
        g.initializer.append(numpy_helper.from_array(known[name], name))
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in keep for i in n.input} | {o.name for o in g.output}
    unused = [i for i in g.initializer if i.name not in used]
    for i in unused:
        g.initializer.remove(i)
    del g.value_info[:]
    onnx.checker.check_model(model)
    return model, len(folded)
