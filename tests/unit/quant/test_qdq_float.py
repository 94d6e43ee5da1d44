"""qdq_rules=trt's float-by-rule pattern (qexp/quant/qdq_float.py) on a small attention block:
the Q behind a reshape of a tensor the MatMul also reads is left float; the Q on a split
output that a residual Add also reads (no layout op to cross) is kept."""

from __future__ import annotations

import torch
from torch import nn

from qexp.quant.fakequant import QuantConv2d
from qexp.quant.placement import prepare
from qexp.quant.qdq_float import RULE


class Attention(nn.Module):
    """ultralytics' Attention in miniature: qkv conv, view + split, MatMul, pe on v."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.pe = nn.Conv2d(c, c, 3, padding=1, groups=c)  # depthwise
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).view(b, 1, 3 * c, h * w).split([c, c, c], dim=2)
        attn = (q.transpose(-2, -1) @ k).softmax(dim=-1)
        y = (v @ attn.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(y)


class PSA(nn.Module):
    """C2PSA in miniature: a split, attention with a residual Add on one half, a concat."""

    def __init__(self) -> None:
        super().__init__()
        self.cv1 = nn.Conv2d(3, 16, 1)
        self.attn = Attention()
        self.cv2 = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.relu(self.cv1(x)).split((8, 8), dim=1)
        b = b + self.attn(b)
        return self.cv2(torch.cat((a, b), 1))


def test_reshaped_shared_tensor_is_left_float_and_recorded():
    model = PSA().eval()
    plan = prepare(model, [], rules="trt")
    (f,) = plan.by_rule
    assert f.layer == "attn.pe" and f.rule == RULE
    assert f.pattern.startswith("split -> reshape -> Q/DQ -> depthwise Conv")
    assert "matmul" in f.pattern
    assert type(model.attn.pe) is nn.Conv2d and "attn.pe" not in plan.quantized
    # split -> Q/DQ -> qkv conv: the split output is read by the Add too, no layout op crossed
    assert isinstance(model.attn.qkv, QuantConv2d) and "attn.qkv" in plan.quantized
    assert plan.info()["float_by_rule"] == [f.as_dict()]


def test_without_trt_rules_nothing_is_left_float():
    model = PSA().eval()
    plan = prepare(model, [], rules="none")
    assert plan.by_rule == [] and "float_by_rule" not in plan.info()
    assert isinstance(model.attn.pe, QuantConv2d)
