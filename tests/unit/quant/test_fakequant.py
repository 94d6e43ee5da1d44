"""Fake-quant layers: TensorRT's grid, per-channel weights, the AdaRound/LSQ hooks, BN folding."""

from __future__ import annotations

import torch
from torch import nn

from qexp.quant.fakequant import ActQuantizer, QuantConv2d, WeightQuantizer, qrange
from qexp.quant.fold import fold_batchnorm


def test_qrange():
    assert qrange(8) == (-128, 127) and qrange(4) == (-8, 7)


def test_act_quantizer_grid_and_identity_before_calibration():
    q = ActQuantizer(8)
    x = torch.linspace(-3, 3, 101)
    assert torch.equal(q(x), x)  # disabled until it has a range
    q.set_amax(2.0)
    s = 2.0 / 127
    expected = torch.clamp(torch.round(x / s), -128, 127) * s
    torch.testing.assert_close(q(x), expected)
    assert q(torch.tensor([100.0])).item() == torch.tensor(127 * s).item()


def test_weight_quantizer_per_channel_and_rounding_hook():
    w = torch.randn(6, 4, 3, 3)
    q = WeightQuantizer(4, per_channel=True)
    amax = w.abs().reshape(6, -1).amax(1)
    q.set_amax(amax)
    s = (amax / 7).view(-1, 1, 1, 1)
    wq = q(w)
    torch.testing.assert_close(wq, torch.clamp(torch.round(w / s), -8, 7) * s)
    assert all(len(torch.unique(wq[c])) <= 16 for c in range(6))
    q.rounding = torch.floor  # AdaRound's place: any rounding of w / scale
    torch.testing.assert_close(q(w), torch.clamp(torch.floor(w / s), -8, 7) * s)


def test_bake_makes_export_path_reproduce_custom_rounding():
    conv = QuantConv2d.from_float(nn.Conv2d(3, 4, 3), 8, 8, True)
    conv.weight_quantizer.set_amax(conv.weight.detach().abs().reshape(4, -1).amax(1))
    conv.weight_quantizer.rounding = torch.ceil
    want = conv.weight_quantizer(conv.weight).detach()
    conv.bake()
    assert conv.weight_quantizer.rounding is None
    torch.testing.assert_close(conv.weight_quantizer(conv.weight), want)


def test_quant_conv_matches_float_conv_on_quantized_operands():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    qc = QuantConv2d.from_float(conv, 8, 8, True)
    torch.testing.assert_close(qc(x), conv(x))  # quantizers off: the float layer
    qc.input_quantizer.set_amax(x.abs().max())
    qc.weight_quantizer.set_amax(conv.weight.detach().abs().reshape(5, -1).amax(1))
    ref = nn.functional.conv2d(
        qc.input_quantizer(x), qc.weight_quantizer(conv.weight), conv.bias, padding=1
    )
    torch.testing.assert_close(qc(x), ref)
    assert qc.weight is conv.weight  # the swap shares parameters


def test_learnable_act_scale_gets_gradient():
    q = ActQuantizer(8)
    q.set_amax(1.0)
    q.make_learnable()
    assert isinstance(q.amax, nn.Parameter)
    q.train()
    x = torch.randn(256, requires_grad=True) * 2
    q(x).pow(2).sum().backward()
    assert q.amax.grad is not None and q.amax.grad.abs() > 0


def test_fold_batchnorm_preserves_outputs(tiny):
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = tiny(x)
        folded = fold_batchnorm(tiny)
        after = tiny(x)
    assert folded == ["model.0", "model.1.cv1", "model.1.cv2", "model.2"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in tiny.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
