"""Fold BatchNorm into the preceding convolution (TensorRT does the same before quantizing)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn``'s affine transform into ``conv``'s weight and bias, in place."""
    assert bn.running_var is not None and bn.running_mean is not None, "BN without running stats"
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    factor = gamma / std
    conv.weight.mul_(factor.reshape(-1, *([1] * (conv.weight.dim() - 1))))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = beta + (bias - bn.running_mean) * factor
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> list[str]:
    """Fold every ``<block>.conv`` + ``<block>.bn`` pair (ultralytics and YOLOv5 ``Conv``
    blocks) and replace the BN with Identity. Returns the folded block names."""
    folded = []
    for name, block in model.named_modules():
        conv, bn = getattr(block, "conv", None), getattr(block, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            fold_conv_bn(conv, bn)
            block.bn = nn.Identity()
            folded.append(name)
    return folded
