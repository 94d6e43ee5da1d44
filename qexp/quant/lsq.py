"""Learnable quantizer scales (LSQ, Esser et al. 2020) for QAT.

Activation quantizers already have ``make_learnable()`` (torch's learnable fake-quant op).
Weight quantizers get it here, by swapping in :class:`LearnableWeightQuantizer`: in training
it quantizes with the straight-through estimator and LSQ's gradient-scaled step; in eval it is
the base class's exportable ``fake_quantize_per_channel_affine``, so the Q/DQ export and the
torch numbers are the same as PTQ's.
"""

from __future__ import annotations

import torch
from torch import nn

from qexp.quant.fakequant import ActQuantizer, WeightQuantizer, qrange, quant_layers


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """Identity forward, gradient times ``g`` (LSQ's step-size gradient scale)."""
    return (x - x * g).detach() + x * g


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return (x.round() - x).detach() + x


class LearnableWeightQuantizer(WeightQuantizer):
    """A weight quantizer whose per-channel (or per-tensor) ``amax`` is a trained parameter."""

    @classmethod
    def from_quantizer(cls, wq: WeightQuantizer) -> LearnableWeightQuantizer:
        new = cls(wq.bits, wq.per_channel)
        new.enabled = wq.enabled
        new.rounding = wq.rounding
        amax = wq.amax.detach().clone()
        del new.amax
        new.amax = nn.Parameter(amax)
        return new

    def scale(self) -> torch.Tensor:
        # detached: the eval / export path treats the learned step as a constant
        return self.amax.detach().abs().clamp_min(1e-8) / self.qmax

    def set_amax(self, amax: torch.Tensor) -> None:
        amax = torch.as_tensor(amax, dtype=torch.float32).detach()
        amax = torch.where(torch.isfinite(amax) & (amax > 0), amax, torch.full_like(amax, 1e-8))
        with torch.no_grad():
            self.amax.copy_(amax.reshape(self.amax.shape))
        self.enabled = True

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not (self.enabled and self.training) or self.rounding is not None:
            return super().forward(w)
        lo, hi = qrange(self.bits)
        per = w[0].numel() if self.per_channel else w.numel()
        scale = _grad_scale(self.amax.abs().clamp_min(1e-8) / hi, 1.0 / (per * hi) ** 0.5)
        if self.per_channel:
            scale = scale.reshape(-1, *([1] * (w.dim() - 1)))
        return torch.clamp(_round_ste(w / scale), lo, hi) * scale


def make_learnable(model: nn.Module, weights: bool = True, acts: bool = True) -> int:
    """Turn the enabled quantizers' scales into parameters, in place. Returns how many."""
    n = 0
    if weights:
        for layer in quant_layers(model).values():
            wq = layer.weight_quantizer
            if wq.enabled and not isinstance(wq, LearnableWeightQuantizer):
                layer.weight_quantizer = LearnableWeightQuantizer.from_quantizer(wq).to(
                    wq.amax.device
                )
                n += 1
    if acts:
        for m in model.modules():
            if isinstance(m, ActQuantizer) and m.enabled and not m.learnable:
                m.make_learnable()
                n += 1
    return n


def scale_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learnable ``amax`` parameters (given their own learning rate by QAT)."""
    return [p for name, p in model.named_parameters() if name == "amax" or name.endswith(".amax")]


@torch.no_grad()
def freeze(model: nn.Module) -> None:
    """Make every learned ``amax`` positive again (a step may push one through zero); the
    quantizers keep their parameters so the model can be trained further."""
    for p in scale_parameters(model):
        p.abs_().clamp_(min=1e-8)
