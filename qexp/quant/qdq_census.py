"""What a Q/DQ ONNX quantizes: activation pairs, weight pairs, and the layers left float.

One count for the tests, ``scripts/arch_census.py`` and docs: read from the exported graph
(what TensorRT is given), joined with the export's record of the layers the rules left float
(``float_by_rule`` in the quantizer's info, :mod:`qexp.quant.qdq_float`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx

from qexp.quant.export import _constants


@dataclass(frozen=True)
class Census:
    """The placement of one Q/DQ graph."""

    act_pairs: int  # QuantizeLinear -> DequantizeLinear on an activation
    weight_qdq: int  # DequantizeLinear on a constant (or on a Q of one): one per weight
    convs: int  # Conv and ConvTranspose nodes
    float_convs: int  # of those, the ones whose input arrives without a DequantizeLinear
    matmuls: int  # MatMul nodes (attention's, between two activations: float in qexp)
    adds: int  # Add nodes of two feature maps (4-D: residuals, attention + pe; not the decode)
    adds_qdq: int  # of those, the ones with an input through Q/DQ (TensorRT fuses Conv + Add)
    by_rule: tuple[dict[str, str], ...] = field(default_factory=tuple)

    def row(self) -> dict[str, object]:
        patterns = sorted({p["pattern"].split(";")[0] for p in self.by_rule})
        return {
            "act_qdq": self.act_pairs,
            "weight_qdq": self.weight_qdq,
            "convs": self.convs,
            "float_convs": self.float_convs,
            "matmuls": self.matmuls,
            "adds (Q/DQ)": f"{self.adds} ({self.adds_qdq})",
            "float_by_rule": len(self.by_rule),
            "patterns": " | ".join(patterns) or "-",
        }


def census(path: Path | str, by_rule: list[dict[str, str]] | None = None) -> Census:
    """The :class:`Census` of the Q/DQ ONNX at ``path``; ``by_rule``: the export's
    ``float_by_rule`` list."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in model.graph.value_info}
    consts = _constants(model)
    made_by = {o: n for n in model.graph.node for o in n.output}
    act = weight = convs = floats = matmuls = adds = adds_qdq = 0
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in consts:
            act += 1
        elif n.op_type == "DequantizeLinear":
            src = made_by.get(n.input[0])
            on_const = n.input[0] in consts or (
                src is not None and src.op_type == "QuantizeLinear" and src.input[0] in consts
            )
            weight += on_const
        elif n.op_type == "MatMul":
            matmuls += 1
        elif n.op_type == "Add" and all(i not in consts and rank.get(i) == 4 for i in n.input):
            adds += 1
            adds_qdq += any(
                made_by.get(i) is not None and made_by[i].op_type == "DequantizeLinear"
                for i in n.input
            )
        elif n.op_type in ("Conv", "ConvTranspose"):
            convs += 1
            src = made_by.get(n.input[0])
            floats += src is None or src.op_type != "DequantizeLinear"
    return Census(act, weight, convs, floats, matmuls, adds, adds_qdq, tuple(by_rule or ()))
