"""Streaming per-tensor statistics: exact min/max and a fixed-size histogram of |x|.

One pass over the calibration images fills these for every observed tensor; every activation
observer (minmax, percentile, mse, entropy, histogram) then reads its range from them, so a
sweep over observers never re-runs calibration. The histogram covers ``[0, range]`` in
``bins`` equal bins; when a larger value arrives the range doubles and adjacent bins merge
pairwise, which is exact (no re-interpolation) and keeps the bin count fixed.

:class:`HistAccumulator` does the streaming on the device of the tensors it sees (the pass
never waits for the GPU); :class:`HistStats` is its result in numpy, what observers, reports
and the calibration cache read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class HistStats:
    bins: int = 2048
    hist: np.ndarray = field(default_factory=lambda: np.zeros(0))
    range: float = 0.0  # upper edge of the last bin
    min: float = math.inf
    max: float = -math.inf
    count: int = 0

    def __post_init__(self) -> None:
        if self.hist.size == 0:
            self.hist = np.zeros(self.bins, dtype=np.float64)

    @property
    def amax(self) -> float:
        """max |x| seen."""
        return max(abs(self.min), abs(self.max)) if self.count else 0.0

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, self.range, self.bins + 1)

    def update(self, x: torch.Tensor) -> None:
        """Add one tensor (a one-off; a calibration pass streams with HistAccumulator)."""
        acc = HistAccumulator.resume(self, x.device)
        acc.update(x)
        done = acc.result()
        self.hist, self.range, self.min, self.max, self.count = (
            done.hist, done.range, done.min, done.max, done.count
        )  # fmt: skip


def _pow2(k: torch.Tensor) -> torch.Tensor:
    """2.0**k for an integer tensor, exactly (built from the float64 exponent bits)."""
    return ((k.long() + 1023) << 52).view(torch.float64)


class HistAccumulator:
    """A HistStats being filled on the device of the tensors it sees.

    Every update stays on that device: no host round trip per tensor (a GPU pass would wait
    on each), one copy to numpy in :meth:`result`. The numbers are those of the host-side
    algorithm it replaced, bit for bit on the CPU (tests/unit/quant/test_histogram.py keeps
    that algorithm as the reference): the same float32 bin index torch.histc computes, the
    same float64 range doubling."""

    def __init__(self, bins: int = 2048) -> None:
        self.bins = bins
        self.count = 0
        self.hist: torch.Tensor | None = None  # float64 (bins,), on the first tensor's device
        self.range = self.min = self.max = torch.zeros(())  # float64 0-d there, once started

    @classmethod
    def resume(cls, st: HistStats, device: torch.device | str = "cpu") -> HistAccumulator:
        acc = cls(st.bins)
        acc._start(torch.device(device))
        assert acc.hist is not None
        acc.hist.copy_(torch.from_numpy(np.asarray(st.hist, dtype=np.float64)))
        acc.range.fill_(st.range)
        acc.min.fill_(st.min)
        acc.max.fill_(st.max)
        acc.count = st.count
        return acc

    def _start(self, device: torch.device) -> None:
        f64 = torch.float64
        self.hist = torch.zeros(self.bins, dtype=f64, device=device)
        self.range = torch.zeros((), dtype=f64, device=device)
        self.min = torch.full((), math.inf, dtype=f64, device=device)
        self.max = torch.full((), -math.inf, dtype=f64, device=device)
        self._bin_ids = torch.arange(self.bins, device=device)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        if self.hist is None:
            self._start(x.device)
        assert self.hist is not None
        lo32, hi32 = torch.aminmax(x)
        lo, hi = lo32.double(), hi32.double()
        self.min = torch.minimum(self.min, lo)
        self.max = torch.maximum(self.max, hi)
        self.count += x.numel()
        amax = torch.maximum(-lo, hi)
        seen = amax > 0  # else all zeros: bin 0 whatever the range, which stays as it is
        rng = torch.where((self.range == 0) & seen, amax, self.range)
        # doublings: the least k >= 0 with amax <= rng * 2**k, read exactly off the binary
        # mantissas m in [0.5, 1) and exponents e: k = ea - er, plus one if ma > mr
        ma, ea = torch.frexp(amax)
        mr, er = torch.frexp(rng)
        k = torch.where(seen, (ea - er + (ma > mr).int()).clamp_min(0), 0)
        self.range = rng * _pow2(k)
        # k doublings merge 2**k adjacent bins (integer counts: the sum is exact in any order)
        merged = torch.zeros_like(self.hist)
        self.hist = merged.index_add_(0, self._bin_ids >> k.clamp_max(62), self.hist)
        # torch.histc(|x|, bins, 0, range) bins by int(|x| * bins / float32(range)) in float32,
        # which needs the range on the host; the same product computed here, then histc over
        # [0, bins] (where it is the identity) bins identically with host-side constants only
        r32 = self.range.float()
        v = x.abs().mul_(self.bins).div_(torch.where(r32 > 0, r32, 1.0))
        self.hist += torch.histc(v, self.bins, 0, self.bins).double()

    def result(self) -> HistStats:
        """The statistics in numpy (the one copy to the host)."""
        if self.hist is None:
            return HistStats(bins=self.bins)
        scalars = torch.stack([self.range, self.min, self.max]).cpu().tolist()
        return HistStats(
            bins=self.bins,
            hist=self.hist.cpu().numpy(),
            range=scalars[0],
            min=scalars[1],
            max=scalars[2],
            count=self.count,
        )


def merge(stats: list[HistStats]) -> HistStats:
    """The statistics of several tensors' values together (a quantizer shared by them), at the
    widest range among them: each histogram's counts are spread over the wider bins as its
    piecewise-linear cumulative count says (exact for the widest one itself; the observers
    then read the merged counts as they read any histogram)."""
    if len(stats) == 1:
        return stats[0]
    bins = stats[0].bins
    if any(st.bins != bins for st in stats):
        raise ValueError(f"cannot merge histograms of {sorted({st.bins for st in stats})} bins")
    rng = max(st.range for st in stats)
    edges = np.linspace(0.0, rng, bins + 1)
    hist = np.zeros(bins, dtype=np.float64)
    for st in stats:
        if st.range <= 0 or rng <= 0:  # all zeros: bin 0 whatever the range
            hist[0] += st.hist.sum()
            continue
        cum = np.concatenate([[0.0], np.cumsum(st.hist)])
        hist += np.diff(np.interp(edges, st.edges, cum))
    return HistStats(
        bins=bins,
        hist=hist,
        range=rng,
        min=min(st.min for st in stats),
        max=max(st.max for st in stats),
        count=sum(st.count for st in stats),
    )


def pack(stats: dict[str, HistStats]) -> dict[str, np.ndarray]:
    """Stats -> arrays for ``np.savez`` (names kept in the manifest, in this order)."""
    names = list(stats)
    return {
        "hist": np.stack([stats[n].hist for n in names]) if names else np.zeros((0, 0)),
        "range": np.array([stats[n].range for n in names], dtype=np.float64),
        "min": np.array([stats[n].min for n in names], dtype=np.float64),
        "max": np.array([stats[n].max for n in names], dtype=np.float64),
        "count": np.array([stats[n].count for n in names], dtype=np.int64),
    }


def unpack(names: list[str], arrays: dict[str, np.ndarray]) -> dict[str, HistStats]:
    hist = arrays["hist"]
    return {
        n: HistStats(
            bins=hist.shape[1],
            hist=hist[i].astype(np.float64),
            range=float(arrays["range"][i]),
            min=float(arrays["min"][i]),
            max=float(arrays["max"][i]),
            count=int(arrays["count"][i]),
        )
        for i, n in enumerate(names)
    }
