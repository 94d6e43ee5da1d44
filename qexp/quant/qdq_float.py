"""``quantizer.qdq_rules=trt``: the activation Q/DQ pairs TensorRT 8.6 refuses, left float by rule.

TensorRT processes an explicit-quantization graph by moving each QuantizeLinear backward (and
each DequantizeLinear forward) across the layers that commute with per-tensor quantization
(Reshape, Transpose, Slice/Split, Concat, MaxPool, nearest Resize), until it meets the layer
that produced the values, into whose output it fuses (NVIDIA's "Processing of Q/DQ networks"
and "Q/DQ layer-placement recommendations": quantize the inputs of weighted layers). A Q that
reaches a *shared* tensor that way is ill-defined: the producer's output is then wanted in
INT8 by the quantized branch and in float by another consumer that reads it unquantized, and
TensorRT 8.6.0's format filter asserts (``filterQDQFormats ... node being incorrectly marked
as an int8 node``). Measured on an H100 (issue 21): yolo11n's C2PSA attention builds once its
one such pair, the positional-encoding depthwise conv fed by ``v.reshape(...)`` while the
MatMul of the attention reads the same ``v`` in float, is kept float; every other pair built.

The rule, by pattern over the traced graph (never by layer name), follows how TensorRT moves
the Q: backward across a layout op only while that op's output feeds nothing but the Q.

    ``view_of_shared``: an activation quantizer whose input comes out of one or more layout
    ops (reshape, view, flatten, squeeze/unsqueeze, permute/transpose, split/chunk, slicing)
    that each feed only the next of them, the last only the quantizer, starting from a tensor
    that other ops read too, gets no Q/DQ: its layer stays float. TensorRT would mark those
    layout ops INT8 but cannot move the Q above them (the tensor they start from is wanted
    unquantized elsewhere): the refused yolo11n pair, ``v -> reshape -> Q/DQ -> depthwise
    conv`` with ``v`` read by the attention's MatMul too.

A Q on a tensor that has other readers itself (no layout op moved) stays where it is, as a
quantize layer of its own: yolo11n's ``split -> Q/DQ -> qkv conv``, whose split output the
PSA residual Add also reads, built, as do C2f's ``chunk -> Q/DQ -> bottleneck`` in every
yolov8n engine. Concat, MaxPool and Resize are not layout ops here: TensorRT runs them INT8
and their consumers share one scale (:mod:`qexp.quant.qdq_rules`).

The graph is read as :mod:`qexp.quant.qdq_rules` reads it: one forward pass on a small zero
image under a ``TorchFunctionMode``; a quantizer's own arithmetic is not a reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from qexp.quant.qdq_rules import act_quantizers, tensors_in

RULE = "view_of_shared"

# Pure layout ops: their output is a view (or a copy in another layout) of their first input.
_VIEWS = {
    torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze, torch.permute,
    torch.transpose, torch.chunk, torch.split, torch.narrow,
    torch.Tensor.reshape, torch.Tensor.view, torch.Tensor.flatten, torch.Tensor.squeeze,
    torch.Tensor.unsqueeze, torch.Tensor.permute, torch.Tensor.transpose,
    torch.Tensor.contiguous, torch.Tensor.chunk, torch.Tensor.split, torch.Tensor.narrow,
    torch.Tensor.__getitem__, torch.Tensor.reshape_as, torch.Tensor.view_as,
}  # fmt: skip


@dataclass(frozen=True)
class FloatByRule:
    """A layer the rules left float: which rule, and the op pattern that made it fire."""

    layer: str
    rule: str
    pattern: str

    def as_dict(self) -> dict[str, str]:
        return {"layer": self.layer, "rule": self.rule, "pattern": self.pattern}


def _op(func: Any) -> str:
    name = getattr(func, "__name__", str(func))
    return {"__getitem__": "slice", "__matmul__": "matmul", "__add__": "add",
            "__mul__": "mul", "__radd__": "add", "__rmul__": "mul"}.get(name, name.strip("_"))  # fmt: skip


class _Reads(TorchFunctionMode):
    """Which op made each tensor, which tensors are layout views of which, and every op (or
    quantizer) reading each tensor; a quantizer's own arithmetic is not a reader."""

    def __init__(self) -> None:
        super().__init__()
        self.made_by: dict[int, str] = {}
        self.view_of: dict[int, int] = {}
        self.readers: dict[int, list[str]] = {}
        self.alive: list[Any] = []  # ids stay unique while the tensors live
        self.inside = 0  # > 0 while a quantizer runs

    def read(self, t: torch.Tensor, by: str) -> None:
        self.alive.append(t)
        self.readers.setdefault(id(t), []).append(by)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = tensors_in(out)
        if self.inside or not outs:  # a quantizer's arithmetic; .shape, .size(), .dim() ...
            return out
        ins = tensors_in(args) + tensors_in(kwargs)
        name = _op(func)
        for t in dict.fromkeys(ins):  # x + x reads x once
            self.read(t, name)
        self.alive.append(outs)
        for o in outs:
            self.made_by.setdefault(id(o), name)
            if func in _VIEWS and ins:
                self.view_of.setdefault(id(o), id(ins[0]))
        return out

    def lands_on(self, t: int) -> tuple[int, list[str]]:
        """Where TensorRT moves a Q on ``t``: up through layout ops each read only by the next
        step; the tensor it stops on, and the layout ops it crossed (top first)."""
        crossed = []
        while t in self.view_of and len(self.readers.get(t, ())) == 1:
            crossed.append(self.made_by.get(t, "?"))
            t = self.view_of[t]
        return t, crossed[::-1]


def _layer_kind(model: nn.Module, layer: str) -> str:
    m = model.get_submodule(layer) if layer else model
    conv = getattr(m, "conv", m) if not isinstance(m, nn.Conv2d) else m
    if isinstance(conv, nn.Conv2d) and conv.groups > 1 and conv.groups == conv.in_channels:
        return "depthwise Conv"
    return type(conv).__name__.replace("Quant", "").replace("2d", "")


@torch.no_grad()
def float_by_rule(model: nn.Module, imgsz: int) -> list[FloatByRule]:
    """The activation quantizers of ``model`` (fake-quant, ranges unset) that the rule above
    leaves float, with the pattern each one matched; in module order."""
    quantizers = act_quantizers(model)
    reads: dict[str, int] = {}
    mode = _Reads()

    def enter(name: str, x: torch.Tensor) -> None:
        mode.read(x, "Q/DQ")
        reads.setdefault(name, id(x))
        mode.inside += 1

    def leave(out: torch.Tensor) -> torch.Tensor:
        # a fresh tensor, so the layer's own op reads the quantizer's output, not its input
        # (a disabled quantizer returns its input itself)
        y = out.clone()
        mode.inside -= 1
        return y

    hooks = []
    for name, q in quantizers.items():
        hooks.append(q.register_forward_pre_hook(lambda m, a, name=name: enter(name, a[0])))
        hooks.append(q.register_forward_hook(lambda m, a, out: leave(out)))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with mode:
            out = model(torch.zeros(1, 3, imgsz, imgsz, device=device))
        del out
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    found = []
    for name, t in reads.items():
        top, crossed = mode.lands_on(t)
        others = list(mode.readers.get(top, ()))
        if not crossed or len(others) < 2:
            continue  # no layout op to cross, or the Q fuses into the tensor's one producer
        others.remove(crossed[0])
        owner, _, attr = name.rpartition(".")
        made = mode.made_by.get(top, "input")
        pattern = (
            f"{made} -> {' -> '.join(crossed)} -> Q/DQ -> {_layer_kind(model, owner)}; the "
            f"{made} output is also read by {', '.join(sorted(others))}"
        )
        found.append(FloatByRule(owner if attr == "input_quantizer" else name, RULE, pattern))
    return found
