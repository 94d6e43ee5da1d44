"""Range observers, each a registered plugin: ``observer.act`` / ``observer.weight`` name one.

Activation ranges come from a :class:`~qexp.quant.histogram.HistStats` (one calibration pass
serves all of them); weight ranges come straight from the weight tensor, per output channel.
Every observer returns ``amax``; the quantizer's scale is ``amax / qmax``.

Each observer declares the ``params`` schema of the observer-axis options it reads (the
percentile, the entropy's quantized bins): ``validate`` checks those for the job's observers,
and ``params_of`` gives an observer its typed parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from qexp.config.schema import Checked, ObserverConfig, OptionError, bounded
from qexp.quant.fakequant import qrange
from qexp.quant.histogram import HistStats
from qexp.registry import OBSERVERS


class ObserverError(ValueError):
    """An observer used where it has no meaning (e.g. entropy on weights)."""


@dataclass
class NoParams(Checked):
    """An observer that reads no option of the observer axis."""


# An observer's ``params``: the options of the observer axis it reads and the values it takes;
# their defaults are the axis schema's (config/schema.py: ObserverConfig, or the schema an
# observer with options of its own registers), never repeated here.
@dataclass
class PercentileParams(Checked):
    percentile: float = bounded(gt=0, le=100)  # of |x|, over all calibration values


@dataclass
class EntropyParams(Checked):
    quant_bins: int = bounded(ge=2)  # TensorRT's 128 quantized bins
    bins: int = bounded()

    def rules(self) -> None:
        if self.quant_bins >= self.bins:
            raise OptionError("quant_bins", self.quant_bins, f"must be < bins ({self.bins})")


@dataclass
class HistogramParams(Checked):
    bins: int = bounded(ge=128)  # the clip search runs from bin 128 up


class Observer:
    name = ""
    weights = True  # usable as observer.weight
    params: ClassVar[type] = NoParams  # the observer-axis options this observer reads

    @classmethod
    def params_of(cls, ocfg: Any) -> Any:
        """This observer's parameters out of the observer axis (``cfg.observer``), checked. An
        option the axis node lacks (it is another observer's schema, without this one's own
        options) takes its default from the schema this observer registered."""
        return cls.params(
            **{
                f.name: getattr(ocfg, f.name) if hasattr(ocfg, f.name) else cls._default(f.name)
                for f in dataclasses.fields(cls.params)
            }
        )

    @classmethod
    def _default(cls, option: str) -> Any:
        schema = OBSERVERS.entry(cls.name).schema or ObserverConfig
        found = [f for f in dataclasses.fields(schema) if f.name == option]
        if not found or found[0].default is dataclasses.MISSING:
            why = f"observer {cls.name!r} reads it; {schema.__name__} has no default for it"
            raise OptionError(option, None, why)
        return found[0].default

    def act_amax(self, st: HistStats, cfg: Any, bits: int) -> float:
        """The activation amax from calibration statistics; ``cfg``: ``params_of(...)`` (or an
        observer axis node that holds this observer's options)."""
        raise NotImplementedError

    def weight_amax(self, w: torch.Tensor, cfg: Any, bits: int, per_channel: bool) -> torch.Tensor:
        raise ObserverError(
            f"observer {self.name!r} calibrates activations only; "
            "use observer.weight=minmax, percentile or mse"
        )


def _flat(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    w = w.detach().float().abs()
    return w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)


def _out(amax: torch.Tensor, per_channel: bool) -> torch.Tensor:
    return amax if per_channel else amax.reshape(())


def _centers(st: HistStats) -> np.ndarray:
    e = st.edges
    return (e[1:] + e[:-1]) / 2


@OBSERVERS.register("minmax")
class MinMax(Observer):
    """The largest |x| seen (TensorRT's IInt8MinMaxCalibrator)."""

    name = "minmax"

    def act_amax(self, st, cfg, bits):
        return st.amax

    def weight_amax(self, w, cfg, bits, per_channel):
        return _out(_flat(w, per_channel).amax(1), per_channel)


@OBSERVERS.register("percentile")
class Percentile(Observer):
    """The ``observer.percentile``-th percentile of |x| over all calibration values."""

    name = "percentile"
    params = PercentileParams

    def act_amax(self, st, cfg, bits):
        total = st.hist.sum()
        if total == 0:
            return st.amax
        cdf = np.cumsum(st.hist) / total
        idx = int(np.searchsorted(cdf, cfg.percentile / 100.0))
        return float(min(st.edges[min(idx + 1, st.bins)], st.amax))

    def weight_amax(self, w, cfg, bits, per_channel):
        q = cfg.percentile / 100.0
        return _out(torch.quantile(_flat(w, per_channel), q, dim=1), per_channel)


def _mse(c: torch.Tensor, n: torch.Tensor, cand: torch.Tensor, bits: int) -> torch.Tensor:
    """Histogram-weighted quantization error of bin centres ``c`` for each candidate amax."""
    lo, hi = qrange(bits)
    s = (cand / hi)[:, None]
    q = torch.clamp(torch.round(c[None, :] / s), lo, hi).mul_(s)
    return q.sub_(c[None, :]).square_().mul_(n[None, :]).sum(1)


def _fq(x: torch.Tensor, amax: torch.Tensor, bits: int) -> torch.Tensor:
    lo, hi = qrange(bits)
    s = amax / hi
    return torch.clamp(torch.round(x / s), lo, hi) * s


@OBSERVERS.register("mse")
class MSE(Observer):
    """The clip that minimises quantization MSE, searched over histogram bins from bin 128 up
    (error measured by quantizing the bin centres, as pytorch-quantization does). The search
    is coarse-to-fine: every ``stride``-th candidate, then every candidate around the best."""

    name = "mse"
    start_bin = 128
    stride = 8

    def act_amax(self, st, cfg, bits):
        if st.hist.sum() == 0:
            return st.amax
        c = torch.from_numpy(_centers(st)).float()
        n = torch.from_numpy(st.hist).float()
        live = n > 0  # empty bins add no error: leave them out of the sums
        c_live, n_live = c[live], n[live]
        top = int(torch.nonzero(live).max()) + 1  # clips past the last value change nothing
        first = min(self.start_bin - 1, top - 1)
        coarse = torch.arange(first, top, self.stride)
        best = int(coarse[torch.argmin(_mse(c_live, n_live, c[coarse], bits))])
        fine = torch.arange(max(first, best - self.stride + 1), min(top, best + self.stride))
        best = int(fine[torch.argmin(_mse(c_live, n_live, c[fine], bits))])
        return float(min(c[best], st.amax))

    def weight_amax(self, w, cfg, bits, per_channel):
        x = _flat(w, per_channel)
        amax = x.amax(1, keepdim=True)
        fracs = torch.linspace(0.3, 1.0, 71)  # candidate clips as fractions of each max
        errs = torch.stack([((_fq(x, amax * f, bits) - x) ** 2).sum(1) for f in fracs])
        # ties (e.g. a channel of zeros) resolve to the largest clip
        best = len(fracs) - 1 - torch.argmin(errs.flip(0), dim=0)
        return _out(amax[:, 0] * fracs[best], per_channel)


@OBSERVERS.register("entropy")
class Entropy(Observer):
    """TensorRT's entropy calibration: the threshold whose 128-level requantization of the
    ``bins``-bin histogram has the smallest KL divergence from it."""

    name = "entropy"
    weights = False
    params = EntropyParams

    def act_amax(self, st, cfg, bits):
        return float(min(entropy_threshold(st, cfg.quant_bins), st.amax))


def entropy_threshold(st: HistStats, quant_bins: int = 128) -> float:
    """TensorRT's KL search (pytorch-quantization's ``_compute_amax_entropy``) in closed form.

    For threshold bin ``i`` the reference P is the first ``i`` bins with the tail folded into
    the last; Q merges them into ``quant_bins`` groups and spreads each group's mass evenly
    over its non-empty bins. Expanding KL(P||Q) = sum p log p - sum_groups mass log q turns
    every term into prefix sums, so all thresholds cost O(thresholds x quant_bins) instead of
    the reference loop's O(thresholds x bins). The last minimum wins, as in TensorRT.
    """
    h = st.hist.astype(np.float64).copy()
    n = len(h)
    if h.sum() == 0 or n <= quant_bins:
        return st.amax
    h[0] = h[1]  # TensorRT ignores the spike of exact zeros
    total = h.sum()
    csum = np.concatenate([[0.0], np.cumsum(h)])
    cnz = np.concatenate([[0.0], np.cumsum(h > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        hlogh = np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0)
    clogs = np.concatenate([[0.0], np.cumsum(hlogh)])
    ts = np.arange(quant_bins, n + 1)  # thresholds, in bins
    tail = total - csum[ts]  # mass beyond each threshold
    k = np.arange(quant_bins + 1)
    bounds = (k[None, :] * ts[:, None] + quant_bins - 1) // quant_bins  # group g: [b_g, b_g+1)
    gsum = csum[bounds[:, 1:]] - csum[bounds[:, :-1]]
    gcnt = cnz[bounds[:, 1:]] - cnz[bounds[:, :-1]]
    mass = gsum.copy()
    mass[:, -1] += tail  # P's last bin holds the tail
    last = h[ts - 1] + tail
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = clogs[ts - 1] + np.where(last > 0, last * np.log(np.where(last > 0, last, 1.0)), 0)
        logq = np.log(gsum) - np.log(gcnt) - np.log(csum[ts])[:, None]
        cross = np.where(mass > 0, mass * np.where(gcnt > 0, logq, -np.inf), 0.0).sum(1)
    kl = (plogp - cross) / total - np.log(total)
    kl[(h[ts - 1] == 0) & (tail > 0)] = np.inf  # tail mass lands on a bin Q leaves empty
    best = len(kl) - 1 - int(np.argmin(kl[::-1]))
    return float(st.edges[int(ts[best])])


@OBSERVERS.register("histogram")
class Histogram(Observer):
    """The clip minimising the expected squared error under the uniform-noise model: step²/12
    for every value inside the clip plus the squared clipping error (with bin-width variance)
    for values beyond it; the search runs over bin edges from bin 128 up."""

    name = "histogram"
    weights = False
    params = HistogramParams
    start_bin = 128

    def act_amax(self, st, cfg, bits):
        n = st.hist
        if n.sum() == 0:
            return st.amax
        c, e = _centers(st), st.edges
        width = e[1] - e[0]
        qmax = qrange(bits)[1]
        i = np.arange(self.start_bin, st.bins + 1)
        t = e[i]
        below = np.concatenate([[0.0], np.cumsum(n)])[i]  # count in bins < i
        sfx = lambda a: np.concatenate([np.cumsum(a[::-1])[::-1], [0.0]])[i]  # noqa: E731
        n_out, s1, s2 = sfx(n), sfx(n * c), sfx(n * c * c)
        err = (
            below * (t / qmax) ** 2 / 12 + (s2 - 2 * t * s1 + t * t * n_out) + n_out * width**2 / 12
        )
        best = int(np.argmin(err))
        return float(min(t[best], st.amax))


def get(name: str) -> Observer:
    """An observer instance by registered name."""
    return OBSERVERS.get(name)()
