"""Fake-quant building blocks: symmetric int quantizers and the Conv/Linear wrappers.

The forward passes use ``torch.fake_quantize_per_{tensor,channel}_affine``: they carry a
straight-through gradient (QAT), and the TorchScript ONNX exporter writes each as a
QuantizeLinear/DequantizeLinear pair, which is the explicit-quantization graph TensorRT fuses.
The grid is TensorRT's: symmetric, zero point 0, ``[-2^(b-1), 2^(b-1)-1]``, scale = amax/qmax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self, TypeAlias

import torch
from torch import nn


def qrange(bits: int) -> tuple[int, int]:
    """The signed integer range of a ``bits``-wide quantizer (ONNX/TensorRT int8: -128..127)."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


class Quantizer(nn.Module):
    """A symmetric ``bits``-wide quantizer with step ``amax / qmax``; an identity until enabled."""

    amax: torch.Tensor

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.enabled = False
        self.register_buffer("amax", torch.tensor(float("nan")))

    @property
    def qmax(self) -> int:
        return qrange(self.bits)[1]

    def scale(self) -> torch.Tensor:
        return self.amax / self.qmax


class ActQuantizer(Quantizer):
    """Per-tensor symmetric activation fake-quant with a calibrated ``amax``.

    ``enabled=False`` (the state before calibration) is an identity. ``make_learnable()`` turns
    the scale into a parameter trained with LSQ's gradient (QAT).
    """

    def __init__(self, bits: int = 8) -> None:
        super().__init__(bits)
        self.learnable = False

    def set_amax(self, amax: float | torch.Tensor) -> None:
        amax = torch.as_tensor(amax, dtype=torch.float32).reshape(())
        if not torch.isfinite(amax) or amax <= 0:
            # a tensor that is constant zero on all calibration data: any positive scale works
            amax = torch.tensor(1e-8)
        if self.learnable:
            self.amax.data.copy_(amax)
        else:
            self.amax.copy_(amax)
        self.enabled = True

    def make_learnable(self) -> None:
        """Turn ``amax`` into a trainable parameter (LSQ)."""
        if not self.learnable:
            amax = self.amax.detach().clone()
            del self.amax
            self.amax = nn.Parameter(amax)
            self.learnable = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        lo, hi = qrange(self.bits)
        if self.learnable and self.training:
            grad_factor = 1.0 / (x.numel() * hi) ** 0.5  # LSQ's step-size gradient scale
            return torch._fake_quantize_learnable_per_tensor_affine(
                x, self.scale().reshape(1), torch.zeros(1, device=x.device), lo, hi, grad_factor
            )
        zero = torch.zeros((), dtype=torch.int32, device=x.device)
        return torch.fake_quantize_per_tensor_affine(x, self.scale().detach(), zero, lo, hi)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, amax={float(self.amax):.5g}, enabled={self.enabled}"


class WeightQuantizer(Quantizer):
    """Symmetric weight fake-quant, per output channel (axis 0) or per tensor.

    ``rounding`` is the hook AdaRound replaces: a callable ``(w / scale) -> rounded`` (soft
    during optimisation). With ``rounding=None`` the exportable round-to-nearest op is used;
    ``bake()`` writes the quantized weights back so that export reproduces any rounding.
    """

    def __init__(self, bits: int = 8, per_channel: bool = True) -> None:
        super().__init__(bits)
        self.per_channel = per_channel
        self.rounding: Callable[[torch.Tensor], torch.Tensor] | None = None

    def set_amax(self, amax: torch.Tensor) -> None:
        amax = torch.as_tensor(amax, dtype=torch.float32).detach().clone()
        amax = torch.where(torch.isfinite(amax) & (amax > 0), amax, torch.full_like(amax, 1e-8))
        self.amax = amax.reshape(-1) if self.per_channel else amax.reshape(())
        self.enabled = True

    def _bshape(self, w: torch.Tensor) -> tuple[int, ...]:
        return (-1,) + (1,) * (w.dim() - 1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        lo, hi = qrange(self.bits)
        scale = self.scale().to(w.device)
        if self.rounding is not None:
            s = scale.reshape(self._bshape(w)) if self.per_channel else scale
            return torch.clamp(self.rounding(w / s), lo, hi) * s
        if self.per_channel:
            zero = torch.zeros(scale.numel(), dtype=torch.int32, device=w.device)
            return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, lo, hi)
        zero = torch.zeros((), dtype=torch.int32, device=w.device)
        return torch.fake_quantize_per_tensor_affine(w, scale, zero, lo, hi)

    def extra_repr(self) -> str:
        mode = "per_channel" if self.per_channel else "per_tensor"
        return f"bits={self.bits}, {mode}, enabled={self.enabled}"


class _QuantMixin:
    """Input and weight quantizers on a layer with a ``weight``; the float op is unchanged."""

    input_quantizer: ActQuantizer
    weight_quantizer: WeightQuantizer
    weight: torch.Tensor

    @classmethod
    def from_float(cls, layer: nn.Module, w_bits: int, a_bits: int, per_channel: bool) -> Self:
        """The quantized twin of ``layer``: same parameters, hooks and attributes; no copy."""
        q: Any = cls.__new__(cls)
        q.__dict__ = dict(layer.__dict__)
        q._modules = dict(layer._modules)
        q._parameters = dict(layer._parameters)
        q._buffers = dict(layer._buffers)
        q._init_quant(w_bits, a_bits, per_channel)
        return q

    def _init_quant(self, w_bits: int, a_bits: int, per_channel: bool) -> None:
        self.input_quantizer = ActQuantizer(a_bits)
        self.weight_quantizer = WeightQuantizer(w_bits, per_channel)

    @torch.no_grad()
    def bake(self) -> None:
        """Write the quantized weights into ``weight`` (after AdaRound); export then matches."""
        wq = self.weight_quantizer(self.weight)
        self.weight.copy_(wq)
        self.weight_quantizer.rounding = None


class QuantConv2d(_QuantMixin, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quantizer(x)
        return self._conv_forward(x, self.weight_quantizer(self.weight), self.bias)


class QuantLinear(_QuantMixin, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quantizer(x)
        return nn.functional.linear(x, self.weight_quantizer(self.weight), self.bias)


QuantLayer: TypeAlias = QuantConv2d | QuantLinear
QUANT_LAYERS: dict[type, Any] = {nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear}


def quant_layers(module: nn.Module) -> dict[str, QuantLayer]:
    """Name -> every quantized Conv/Linear in ``module``."""
    return {n: m for n, m in module.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))}
