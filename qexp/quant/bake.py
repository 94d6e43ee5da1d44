"""Weights below 8 bits in an INT8 Q/DQ graph: bake them onto their grid, hold them in int8.

ONNX QuantizeLinear/DequantizeLinear and the TorchScript exporter accept only 8-bit ranges
((-128, 127) or (0, 255)), so a 4-bit weight quantizer cannot be exported as such. A weight
baked onto the 4-bit grid (w = s * k, k in [-8, 7]) is represented exactly by an int8
quantizer with the same step s, so exporting it that way is lossless: ONNX Runtime and TensorRT
compute with the same numbers torch does (TensorRT runs such layers as INT8: the 4-bit accuracy,
not a 4-bit speed-up).
"""

from __future__ import annotations

import torch
from torch import nn

from qexp.quant.fakequant import qrange, quant_layers


@torch.no_grad()
def int8_container(model: nn.Module) -> list[str]:
    """Bake every enabled weight quantizer of fewer than 8 bits and re-express it as int8 with
    the same scale, in place. Returns the layers converted."""
    converted = []
    for name, layer in quant_layers(model).items():
        wq = layer.weight_quantizer
        if not wq.enabled or wq.bits >= 8:
            continue
        scale = wq.scale().detach().clone()
        layer.bake()  # onto the low-bit grid: nearest, or the rounding hook's choice
        wq.bits = 8
        wq.set_amax(scale * qrange(8)[1])
        converted.append(name)
    return converted
