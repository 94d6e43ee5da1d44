"""Observers: the entropy search against TensorRT's reference loop, and each range rule."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import entropy as scipy_kl

from qexp.quant.histogram import HistStats
from qexp.quant.observers import ObserverError, entropy_threshold, get
from qexp.registry import OBSERVERS

CFG = OmegaConf.create({"percentile": 99.0, "quant_bins": 128})


def reference_entropy(hist, edges, nbins=128, start_bin=128):
    """pytorch-quantization's _compute_amax_entropy loop (TensorRT's algorithm), verbatim
    apart from names: the ground truth the vectorised version must reproduce."""
    bins = hist.copy()
    bins[0] = bins[1]
    divergences = []
    for i in range(start_bin, len(bins) + 1):
        space = np.linspace(0, i, num=nbins + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        counts = np.zeros(nbins)
        for idx, d in enumerate(digitized):
            if d != -1:
                counts[d] += bins[idx]
        for key, val in Counter(digitized).items():
            if key != -1:
                counts[key] = counts[key] / val
        new = np.zeros(i)
        for idx, d in enumerate(digitized):
            if d != -1:
                new[idx] = counts[d]
        ref = np.array(bins[:i])
        ref[-1] += np.sum(bins[i:])
        divergences.append(scipy_kl(ref, new))
    divergences = np.array(divergences)
    last = len(divergences) - 1 - np.argmin(divergences[::-1])
    return edges[last + start_bin]


def _stats(kind: str, bins: int = 256, seed: int = 0) -> HistStats:
    g = torch.Generator().manual_seed(seed)
    st = HistStats(bins=bins)
    for k in range(3):  # growing scale: exercises the range doubling
        x = torch.randn(20000, generator=g) * (1 + k)
        if kind == "relu":
            x = torch.relu(x)
        elif kind == "coarse":
            x = torch.round(x * 2) / 2  # many empty bins
        elif kind == "outliers":
            x[:5] *= 20
        st.update(x)
    return st


@pytest.mark.parametrize("kind", ["normal", "relu", "coarse", "outliers"])
def test_entropy_matches_tensorrt_reference(kind):
    st = _stats(kind)
    assert entropy_threshold(st) == pytest.approx(reference_entropy(st.hist, st.edges))


def test_histogram_doubling_is_exact():
    g = torch.Generator().manual_seed(1)
    xs = [torch.rand(5000, generator=g) * s for s in (0.3, 1.0, 5.0)]
    st = HistStats(bins=64)
    for x in xs:
        st.update(x)
    once = torch.histc(torch.cat(xs), bins=64, min=0, max=st.range).double().numpy()
    # merged bins equal a one-shot histogram over the final range (up to float32 edge ties)
    np.testing.assert_allclose(st.hist, once, atol=2)
    assert st.hist.sum() == 15000 and st.max == pytest.approx(max(float(x.max()) for x in xs))
    assert st.amax <= st.range < 2 * st.amax


def _quant_mse(x: torch.Tensor, amax: float) -> float:
    s = amax / 127
    return float(((torch.clamp(torch.round(x / s), -128, 127) * s - x) ** 2).mean())


def test_act_observers_against_raw_data():
    torch.manual_seed(0)
    x = torch.distributions.Laplace(0.0, 1.0).sample((60000,))  # heavy-tailed, like activations
    st = HistStats(bins=2048)
    for part in x.split(20000):
        st.update(part)
    amax = {n: get(n).act_amax(st, CFG, 8) for n in OBSERVERS.names()}
    assert amax["minmax"] == pytest.approx(float(x.abs().max()))
    for name, a in amax.items():
        assert 0 < a <= st.amax, name
    assert amax["percentile"] == pytest.approx(float(torch.quantile(x.abs(), 0.99)), rel=0.01)
    # mse searches the histogram for the smallest quantization error: on the raw data it beats
    # the unclipped range and the percentile clip
    err = {n: _quant_mse(x, a) for n, a in amax.items()}
    assert err["mse"] < err["minmax"] and err["mse"] < err["percentile"]
    # the uniform-noise model and KL land near the mse optimum on this distribution
    assert err["histogram"] < 1.2 * err["mse"] and err["entropy"] < 1.2 * err["mse"]


def test_weight_observers_per_channel():
    w = torch.randn(4, 3, 3, 3)
    w[2] *= 10
    w[1, 0, 0, 0] = 50.0  # one outlier in channel 1
    mm = get("minmax").weight_amax(w, CFG, 8, per_channel=True)
    torch.testing.assert_close(mm, w.abs().reshape(4, -1).amax(1))
    assert get("minmax").weight_amax(w, CFG, 8, per_channel=False).shape == ()
    pc = get("percentile").weight_amax(w, CFG, 8, per_channel=True)
    assert pc.shape == (4,) and (pc <= mm).all()
    mse = get("mse").weight_amax(w, CFG, 4, per_channel=True)
    assert (mse <= mm + 1e-6).all()
    for c in range(4):  # the chosen clip never quantizes worse than the channel's max

        def q(a, c=c):
            return ((torch.clamp(torch.round(w[c] / (a / 7)), -8, 7) * a / 7 - w[c]) ** 2).sum()  # noqa: E731

        assert q(mse[c]) <= q(mm[c]) + 1e-6
    with pytest.raises(ObserverError, match="activations only"):
        get("entropy").weight_amax(w, CFG, 8, per_channel=True)


def test_registered_names():
    assert {"minmax", "percentile", "mse", "entropy", "histogram"} <= set(OBSERVERS.names())


@pytest.mark.parametrize("kind", ["normal", "relu", "outliers"])
def test_mse_coarse_to_fine_matches_exhaustive_search(kind):
    from qexp.quant.observers import _centers, _mse

    st = _stats(kind, bins=2048)
    c, n = torch.from_numpy(_centers(st)).float(), torch.from_numpy(st.hist).float()
    exhaustive = _mse(c, n, c[127:], 8)
    chosen = get("mse").act_amax(st, CFG, 8)
    got = _mse(c, n, torch.tensor([chosen], dtype=torch.float32), 8)[0]
    assert got <= exhaustive.min() * 1.01


def test_an_observer_option_has_one_default_the_axis_schemas():
    """An observer's params name the options it reads and the values they take, never their
    defaults: those are the observer axis schema's (ObserverConfig, or the one it registered)."""
    import dataclasses

    from qexp.config.schema import ObserverConfig
    from qexp.plugins import load_plugins

    load_plugins()
    for entry in OBSERVERS:
        params = dataclasses.fields(entry.obj.params)
        axis = {f.name: f for f in dataclasses.fields(entry.schema or ObserverConfig)}
        for f in params:
            assert f.default is dataclasses.MISSING, f"{entry.name}: params.{f.name}"
            assert axis[f.name].default is not dataclasses.MISSING, f"{entry.name}: {f.name}"
    built = get("entropy").params_of(OmegaConf.create({"quant_bins": 64}))  # bins from the axis
    assert (built.quant_bins, built.bins) == (64, ObserverConfig.bins)
