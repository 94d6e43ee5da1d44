"""The calibration cache: one pass stored, reused, and rebuilt when corrupt or partial."""

from __future__ import annotations

import numpy as np

from qexp.quant.calibrate import cached_stats, load_stats
from qexp.quant.placement import quantizable
from qexp.quant.steps import float_twin

from .conftest import ImageData


def test_cache_roundtrip_and_corruption(tiny, tmp_path):
    model = float_twin(tiny)
    layers, _ = quantizable(model)
    data = ImageData()
    stats, hit = cached_stats(tmp_path, model, layers, lambda: data.calibration(32, 3), bins=128)
    assert not hit and data.calls == 1 and list(stats) == layers
    again, hit = cached_stats(tmp_path, model, layers, lambda: data.calibration(32, 3), bins=128)
    assert hit and data.calls == 1  # no second pass
    for n in layers:
        np.testing.assert_array_equal(again[n].hist, stats[n].hist)
        assert (again[n].min, again[n].max, again[n].range) == (
            stats[n].min,
            stats[n].max,
            stats[n].range,
        )
    # a flipped byte in the arrays: detected by the content hash, recalibrated
    blob = bytearray((tmp_path / "stats.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "stats.npz").write_bytes(bytes(blob))
    assert load_stats(tmp_path, layers) is None
    _, hit = cached_stats(tmp_path, model, layers, lambda: data.calibration(32, 3), bins=128)
    assert not hit and data.calls == 2
    # a partial entry (arrays without manifest) is not trusted either
    (tmp_path / "manifest.json").unlink()
    assert load_stats(tmp_path, layers) is None
    # an entry for other layers is not used
    _, _ = cached_stats(tmp_path, model, layers, lambda: data.calibration(32, 3), bins=128)
    assert load_stats(tmp_path, layers[:-1]) is None
