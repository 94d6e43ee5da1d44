"""Streaming per-tensor statistics: exact min/max and a fixed-size histogram of |x|.

One pass over the calibration images fills these for every observed tensor; every activation
observer (minmax, percentile, mse, entropy, histogram) then reads its range from them, so a
sweep over observers never re-runs calibration. The histogram covers ``[0, range]`` in
``bins`` equal bins; when a larger value arrives the range doubles and adjacent bins merge
pairwise, which is exact (no re-interpolation) and keeps the bin count fixed.
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

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        lo_t, hi_t = torch.aminmax(x)
        mn, mx = float(lo_t), float(hi_t)
        self.min, self.max = min(self.min, mn), max(self.max, mx)
        self.count += x.numel()
        amax = max(-mn, mx)
        if amax <= 0:  # all zeros: they belong in bin 0 whatever the range becomes
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
