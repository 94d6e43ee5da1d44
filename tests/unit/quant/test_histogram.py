"""The device-side histogram equals the host-side algorithm it replaced, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qexp.quant.histogram import HistAccumulator, HistStats


class HostReference:
    """The former HistStats.update (host floats, numpy histogram, a loop of doublings),
    verbatim apart from names: the CPU numbers that must not move."""

    def __init__(self, bins: int) -> None:
        self.bins, self.hist = bins, np.zeros(bins, dtype=np.float64)
        self.range, self.min, self.max, self.count = 0.0, math.inf, -math.inf, 0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        lo_t, hi_t = torch.aminmax(x)
        mn, mx = float(lo_t), float(hi_t)
        self.min, self.max = min(self.min, mn), max(self.max, mx)
        self.count += x.numel()
        amax = max(-mn, mx)
        if amax <= 0:
            self.hist[0] += x.numel()
            return
        if self.range == 0.0:
            self.range = amax
        while amax > self.range:
            self.hist = np.concatenate(
                [self.hist.reshape(-1, 2).sum(1), np.zeros(self.bins // 2, dtype=np.float64)]
            )
            self.range *= 2.0
        h = torch.histc(x.abs(), bins=self.bins, min=0.0, max=self.range)
        self.hist += h.double().numpy()


def _stream(seed: int) -> list[torch.Tensor]:
    """Tensors that exercise every branch: zeros first and later, negative-only, growth by
    1-40 doublings in one step, values on bin edges, shrinking ranges, odd shapes."""
    g = torch.Generator().manual_seed(seed)
    out = [torch.zeros(7, 3)]
    for scale in (1e-3, 0.5, 0.7, 3.0, 1.0, 1e4, 2.0, 1e9, 0.1):
        x = torch.randn(4, 8, 33, generator=g) * scale
        out.append(x)
        out.append(torch.relu(x))
        out.append(-x.abs())
    out.append(torch.zeros(5))
    # values exactly on edges of the current range's bins
    out.append(torch.arange(0, 2049, dtype=torch.float32) / 2048 * 1e9)
    out.append(torch.full((3,), 2.0**40))
    return out


@pytest.mark.parametrize("bins", [64, 2048])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_the_host_algorithm_bit_for_bit(bins, seed):
    ref, acc = HostReference(bins), HistAccumulator(bins)
    for x in _stream(seed):
        ref.update(x)
        acc.update(x)
        got = acc.result()
        np.testing.assert_array_equal(got.hist, ref.hist)
        assert (got.range, got.min, got.max, got.count) == (
            ref.range, ref.min, ref.max, ref.count
        )  # fmt: skip


def test_a_real_activation_stream_bit_for_bit():
    """Heavy-tailed activations in many small updates, the way a calibration pass sees them."""
    g = torch.Generator().manual_seed(3)
    ref, acc = HostReference(2048), HistAccumulator(2048)
    for i in range(40):
        x = torch.nn.functional.silu(torch.randn(16, 40, 40, generator=g) * (1 + i % 7))
        x[0, 0, : i % 5] *= 30
        ref.update(x)
        acc.update(x)
    got = acc.result()
    np.testing.assert_array_equal(got.hist, ref.hist)
    assert got.range == ref.range and got.hist.sum() == got.count


def test_no_update_and_resume():
    assert HistAccumulator(16).result().hist.shape == (16,)
    st = HistStats(bins=32)
    st.update(torch.tensor([0.5, -1.0]))
    st.update(torch.tensor([3.0]))  # resumes from the numpy state: one doubling, then two
    ref = HostReference(32)
    ref.update(torch.tensor([0.5, -1.0]))
    ref.update(torch.tensor([3.0]))
    np.testing.assert_array_equal(st.hist, ref.hist)
    assert (st.range, st.min, st.max, st.count) == (4.0, -1.0, 3.0, 3)
