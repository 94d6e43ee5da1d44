"""Where quantizers go: module swapping (no FX tracing, which YOLO graphs break).

Every Conv2d/Linear becomes a Quant* twin with an input (activation) quantizer and a weight
quantizer; ignored layers stay float. Residual adds get a quantizer on the identity branch:
TensorRT fuses ``Conv + Add`` into one INT8 convolution only when the add's other input
arrives through Q/DQ (its "Q/DQ placement recommendations"); the conv branch stays
unquantized so the fusion can happen. Concats get no quantizer of their own: their consumer's
input Q/DQ is propagated by TensorRT across the concat onto every input (Q commutes with
Concat, MaxPool and Resize); with ``qdq_rules=trt`` every quantizer that reads a tensor so
joined shares that one scale (:mod:`qexp.quant.qdq_rules`), as an INT8 concat needs.
"""

from __future__ import annotations

import logging
import types
from dataclasses import dataclass, field

import torch
from torch import nn

from qexp.quant.fakequant import QUANT_LAYERS, ActQuantizer
from qexp.quant.qdq_float import FloatByRule, float_by_rule
from qexp.quant.qdq_rules import QdqRules, SharedScale, share, shared_scales

log = logging.getLogger("qexp")

# Blocks whose layers are fixed arithmetic rather than learned features: kept float always.
# DFL's 1x1 conv holds the constants 0..15 (an expectation over bins), not weights.
FLOAT_BLOCKS = ("DFL",)
RESIDUAL_BLOCKS = ("Bottleneck",)  # ultralytics and YOLOv5: x + cv2(cv1(x)) when .add


@dataclass
class QuantPlan:
    quantized: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # by the ignore patterns
    fixed: list[str] = field(default_factory=list)  # never quantized (FLOAT_BLOCKS)
    residual: dict[str, str] = field(default_factory=dict)  # block -> layer sharing its input
    shared: list[SharedScale] = field(default_factory=list)  # qdq_rules=trt: tied quantizers
    by_rule: list[FloatByRule] = field(default_factory=list)  # qdq_rules=trt: left float

    def info(self) -> dict:
        out: dict[str, list] = {
            "quantized": list(self.quantized),
            "ignored": list(self.ignored),
            "float_by_design": list(self.fixed),
            "residual_quantizers": sorted(self.residual),
        }
        if self.shared:  # only with qdq_rules=trt: records of other jobs stay as they were
            out["shared_scales"] = [list(g.quantizers) for g in self.shared]
        if self.by_rule:
            out["float_by_rule"] = [f.as_dict() for f in self.by_rule]
        return out


def quantizable(model: nn.Module) -> tuple[list[str], list[str]]:
    """(quantizable layer names, layers kept float by design), in module order."""
    layers: list[str] = []
    fixed: list[str] = []
    float_prefixes = [n + "." for n, m in model.named_modules() if type(m).__name__ in FLOAT_BLOCKS]
    for name, m in model.named_modules():
        if type(m) in QUANT_LAYERS:
            (fixed if any(name.startswith(p) for p in float_prefixes) else layers).append(name)
    return layers, fixed


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _residual_forward(self, x: torch.Tensor) -> torch.Tensor:
    """Bottleneck.forward with the identity branch quantized (see the module docstring)."""
    y = self.cv2(self.cv1(x))
    return self.residual_quantizer(x) + y if self.add else y


def prepare(
    model: nn.Module,
    ignored: list[str] | set[str],
    w_bits: int = 8,
    a_bits: int = 8,
    per_channel: bool = True,
    residual: bool = True,
    rules: str = QdqRules.none,
) -> QuantPlan:
    """Swap quantizable layers (except ``ignored``) for fake-quant twins, in place.

    Quantizers start disabled (identity) until :func:`qexp.quant.steps.set_ranges` gives them
    ranges. ``rules=trt``: the quantizers :func:`qdq_rules.shared_scales` groups become one
    module per group. Returns what was quantized and what was not.
    """
    layers, fixed = quantizable(model)
    ignored = set(ignored)
    plan = QuantPlan(fixed=fixed, ignored=[n for n in layers if n in ignored])
    floats: dict[str, nn.Module] = {}
    for name in layers:
        if name in ignored:
            continue
        layer = floats[name] = model.get_submodule(name)
        _set(model, name, QUANT_LAYERS[type(layer)].from_float(layer, w_bits, a_bits, per_channel))
        plan.quantized.append(name)
    if residual:
        quantized = set(plan.quantized)
        for name, m in model.named_modules():
            # subclasses too (YOLOv9's RepBottleneck): the same x + cv2(cv1(x)) forward
            is_block = any(c.__name__ in RESIDUAL_BLOCKS for c in type(m).__mro__)
            if not is_block or not getattr(m, "add", False):
                continue
            first = f"{name}.cv1.conv"
            if first in quantized:
                m.residual_quantizer = ActQuantizer(a_bits)
                m.forward = types.MethodType(_residual_forward, m)
                plan.residual[name] = first
    if rules == QdqRules.trt:
        _leave_float_by_rule(model, plan, floats)
        plan.shared = shared_scales(model, plan.residual, _probe_size(model))
        share(model, plan.shared)
    return plan


def _leave_float_by_rule(model: nn.Module, plan: QuantPlan, floats: dict[str, nn.Module]) -> None:
    """Put back the float layer of every quantizer :func:`qdq_float.float_by_rule` refuses,
    until none is left (a layer put back is a float reader itself, which may refuse more)."""
    while found := [f for f in float_by_rule(model, _probe_size(model)) if f.layer in floats]:
        for f in found:
            _set(model, f.layer, floats.pop(f.layer))
            plan.quantized.remove(f.layer)
            plan.by_rule.append(f)
            log.info("qdq_rules=trt: %s left float (%s: %s)", f.layer, f.rule, f.pattern)


def _probe_size(model: nn.Module) -> int:
    """A small input every stride of ``model`` divides twice (the rules' tracing pass)."""
    stride = getattr(model, "stride", None)
    s = int(max(stride)) if isinstance(stride, torch.Tensor | list | tuple) and len(stride) else 32
    return max(64, 2 * s)
