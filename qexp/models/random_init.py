"""Random weights that keep activations alive, for architecture yamls used as test models.

An ultralytics architecture yaml builds with PyTorch's default conv init, whose variance shrinks
by about 3x a layer: after the ~30 convs of a YOLO backbone the head sees near-zero features,
every anchor gets the same score and a top-k (NMS-free heads) or NMS breaks ties arbitrarily,
so two runtimes cannot be compared on it. He-normal weights (variance 2 / fan_in, the gain
that keeps a ReLU-like activation's variance) and random BatchNorm statistics give every anchor
its own score, so torch, ONNX Runtime and ultralytics' own validator can be compared detection
by detection; the weights stay meaningless (mAP near 0).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


@torch.no_grad()
def informative_random(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-draw ``model``'s conv and BatchNorm parameters in place (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.requires_grad:  # not DFL's fixed 0..15
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            mean, var = m.running_mean, m.running_var
            if mean is not None and var is not None:  # track_running_stats
                mean.copy_(0.1 * torch.randn(mean.shape, generator=g))
                var.copy_(1.0 + 0.1 * torch.rand(var.shape, generator=g))
    for m in model.modules():
        for branch in (getattr(m, "cv3", None), getattr(m, "one2one_cv3", None)):
            seqs: Any = branch if isinstance(branch, nn.ModuleList) else ()
            for seq in seqs:
                # one score per anchor shared by all classes, plus a little per class: the
                # top scores spread over many classes instead of the one with the largest bias
                last: Any = list(seq)[-1]
                w, b = last.weight, last.bias
                w.copy_(w[:1] + 0.3 * w)
                b.zero_()
        if getattr(m, "reg_max", None) == 1:  # a head regressing box sides directly (YOLO26)
            for branch in (getattr(m, "cv2", None), getattr(m, "one2one_cv2", None)):
                for seq in branch or ():
                    # sides of ~2 strides, so boxes have positive size and can meet objects
                    last = list(seq)[-1]
                    last.weight.mul_(0.1)
                    last.bias.fill_(2.0)
    return model
