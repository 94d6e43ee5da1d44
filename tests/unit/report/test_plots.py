"""Report plots render to PNG from real inputs: records, TensorRT inspector JSON, histograms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from qexp.report import plots
from qexp.report.load import from_records
from tests.unit.report.conftest import FIXTURES

PNG = b"\x89PNG\r\n\x1a\n"


def test_pareto_front_keeps_only_undominated_points():
    lat = [41.0, 30.0, 22.0, 22.5, 22.2, 35.0]
    acc = [0.399, 0.398, 0.371, 0.380, 0.389, 0.390]
    front = plots.pareto_front(lat, acc)
    assert front == [2, 4, 1, 0]  # by latency: 22.0, 22.2, 30.0, 41.0
    for i in set(range(len(lat))) - set(front):  # each left-out point is beaten on both
        assert any(lat[j] <= lat[i] and acc[j] >= acc[i] for j in front)


def test_pareto_plot_png(observer_sweep):
    df = from_records(observer_sweep)
    png = plots.png_bytes(
        plots.pareto(df, label_by=["quantizer", "observer"], color_by="quantizer")
    )
    assert png.startswith(PNG) and len(png) > 10_000


def test_pareto_without_points_says_why(observer_sweep):
    df = from_records(observer_sweep).assign(latency_ms_p50=np.nan)
    with pytest.raises(ValueError, match="no finished job has both"):
        plots.pareto(df)


def test_float_baselines_are_labelled_without_quant_axes():
    row = pd.Series({"quantizer": "none", "observer": "minmax", "precision": "fp32"})
    assert plots.point_label(row, ["quantizer", "observer"]) == "none"
    row = pd.Series({"quantizer": "ptq", "observer": "mse", "precision": "int8"})
    assert plots.point_label(row, ["quantizer", "observer"]) == "ptq mse"


def test_precision_map_from_recorded_engines():
    engine_info = pytest.importorskip("qexp.trt.engine_info")
    from qexp.report.precision_map import engine_layers, float_layers, layer_frame, precision_map

    engines = {m: engine_layers(FIXTURES / f"layers_{m}.json") for m in ("fp32", "fp16", "qdq")}
    for mode, table in engines.items():  # the map counts layers the way the metrics do
        summary = engine_info.summarize(engine_info.load(FIXTURES / f"layers_{mode}.json"))
        cats = layer_frame(table)["category"]
        assert len(cats) == summary.layers_total
        assert (cats == "reformat").sum() == summary.reformat_layers
    assert set(layer_frame(engines["fp16"])["category"]) >= {"fp16", "reformat"}
    qdq = layer_frame(engines["qdq"])
    assert (qdq["category"] == "int8").sum() > (qdq["category"] == "fp32").sum()
    assert set(float_layers(engines["qdq"])["category"]) <= {"fp16", "fp32"}
    png = plots.png_bytes(precision_map(engines))
    assert png.startswith(PNG)


def test_sensitivity_plot_ranks_largest_first():
    scores = {f"model.{i}.conv": float(i) for i in range(40)}
    fig = plots.sensitivity(scores, "mse", top=10)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1] == "model.39.conv" and len(labels) == 10  # barh: top bar is last
    assert plots.png_bytes(fig).startswith(PNG)


def test_calibration_histogram_with_each_observer_clip():
    from omegaconf import OmegaConf

    from qexp.plugins import load_plugins
    from qexp.quant.calibrate import observer_clips
    from qexp.quant.histogram import HistStats

    load_plugins()  # the observers whose clips these are (alone, nothing else loaded them)
    torch.manual_seed(0)
    st = HistStats(bins=2048)
    for _ in range(4):  # heavy-tailed activations, as after SiLU in a detector
        st.update(torch.distributions.StudentT(3.0).sample((20_000,)))
    ocfg = OmegaConf.create({"percentile": 99.99, "bins": 2048, "quant_bins": 128})
    clips = observer_clips(st, ocfg, bits=8)
    assert set(clips) == {"minmax", "percentile", "mse", "entropy", "histogram"}
    assert clips["minmax"] == pytest.approx(st.amax)
    assert all(0 < v <= st.amax + 1e-6 for v in clips.values())
    assert clips["mse"] < clips["minmax"]  # a heavy tail is clipped
    fig = plots.calibration_histogram(st.hist, st.edges, clips, tensor="model.2.cv1.conv")
    assert len(fig.axes[0].get_lines()) == 5
    assert plots.png_bytes(fig).startswith(PNG)
