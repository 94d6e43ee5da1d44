"""``model.split_c2f``: C2f's ``cv1(x).chunk(2, 1)`` (C2PSA's ``split``) as two convolutions.

TensorRT runs the chunk as two Slice layers that copy cv1's output, and in INT8 the copy keeps
cv1 from writing its halves straight into the tensors the bottleneck and the Concat read.
A convolution's output channels are independent of each other, so a convolution holding the
first half of cv1's filters (and bias) computes exactly the first half of cv1's output: the
rewrite changes no value, only the graph. It is applied to the loaded float module, before any
quantizer sees it, so the fake-quant twin quantizes both convolutions as it quantized cv1
(each reads cv1's input through its own input quantizer, whose range is measured on that same
tensor; per-channel weight scales are those of cv1's filters, per-tensor ones are measured per
half).
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn


def _half(conv: nn.Conv2d, part: slice) -> nn.Conv2d:
    """A convolution computing the output channels ``part`` of ``conv``."""
    if conv.groups != 1:
        raise ValueError(f"cannot split a grouped convolution ({conv.groups} groups)")
    out = copy.deepcopy(conv)  # stride, padding, dilation, device and dtype as they were
    out.weight = nn.Parameter(conv.weight.detach()[part].clone(), conv.weight.requires_grad)
    out.out_channels = out.weight.shape[0]
    if conv.bias is not None:
        out.bias = nn.Parameter(conv.bias.detach()[part].clone(), conv.bias.requires_grad)
    return out


def _half_bn(bn: nn.BatchNorm2d, part: slice) -> nn.BatchNorm2d:
    out = copy.deepcopy(bn)
    out.num_features = part.stop - part.start
    for name in ("weight", "bias"):
        setattr(out, name, nn.Parameter(getattr(bn, name).detach()[part].clone()))
    for name in ("running_mean", "running_var"):
        setattr(out, name, getattr(bn, name)[part].clone())
    return out


class SplitConv(nn.Module):
    """An ultralytics ``Conv`` (conv [+ bn] + act) as two, ``a`` and ``b``, one per half of
    its output channels; ``forward`` returns the pair, as ``chunk(2, 1)`` of the original."""

    def __init__(self, conv: Any, c: int) -> None:
        super().__init__()
        halves = []
        for part in (slice(0, c), slice(c, 2 * c)):
            half = copy.deepcopy(conv)  # its act and its fused forward come along
            half.conv = _half(conv.conv, part)
            if isinstance(getattr(conv, "bn", None), nn.BatchNorm2d):
                half.bn = _half_bn(conv.bn, part)
            halves.append(half)
        self.a, self.b = halves

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(x), self.b(x)


def _forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """C2f.forward with cv1 split: the same list of tensors, concatenated the same way."""
    y = list(self.cv1(x))
    y.extend(m(y[-1]) for m in self.m)
    return self.cv2(torch.cat(y, 1))


def _forward_psa(self: Any, x: torch.Tensor) -> torch.Tensor:
    """C2PSA.forward with cv1 split (YOLO11's attention block splits cv1 the same way)."""
    a, b = self.cv1(x)
    return self.cv2(torch.cat((a, self.m(b)), 1))


def split_c2f(model: nn.Module) -> list[str]:
    """Rewrite every C2f-like block of ``model`` in place (C2f and the subclasses that keep
    its forward: YOLO11's C3k2, YOLOv10's C2fCIB, C2fPSA; and YOLO11's C2PSA); their module
    names, in order."""
    # ultralytics is loaded already (models/ultralytics_family.py, after offline.setup())
    from ultralytics.nn.modules.block import C2PSA, C2f

    forwards: dict[Any, Callable[..., torch.Tensor]] = {C2f: _forward, C2PSA: _forward_psa}
    done = []
    for name, m in model.named_modules():
        m = cast(Any, m)
        # a subclass with its own forward (C2fAttn) reads cv1 its own way: left as it is
        new = next((f for cls, f in forwards.items() if type(m).forward is cls.forward), None)
        if new is None or isinstance(m.cv1, SplitConv):
            continue
        m.cv1 = SplitConv(m.cv1, m.c)
        m.forward = types.MethodType(new, m)
        done.append(name)
    return done
