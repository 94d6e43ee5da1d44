"""Comparison tables: rows by what varies, deltas against a baseline row, best marked."""

from __future__ import annotations

import pandas as pd
import pytest

from qexp.record import Equivalent
from qexp.report.load import from_records
from qexp.report.render import render, to_markdown
from qexp.report.table import TableError, best_rows, comparison_table, varying_axes
from tests.unit.report.conftest import m, write_sweep


def _row(table: pd.DataFrame, **choices) -> pd.Series:
    sel = table
    for k, v in choices.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, (choices, sel)
    return sel.iloc[0]


def test_rows_are_the_varying_axes_in_sweep_order(observer_sweep):
    df = from_records(observer_sweep)
    assert varying_axes(df) == ["quantizer", "observer", "calibrator"]
    t = comparison_table(df)
    assert list(t["quantizer"]) == ["none", "fp16", "ptq", "ptq", "ptq", "trt_builtin"]
    assert list(t["observer"])[2:5] == ["minmax", "entropy", "mse"]  # as swept, not sorted


def test_deltas_against_inferred_fp32_baseline(observer_sweep):
    t = comparison_table(from_records(observer_sweep))
    assert t.attrs["baseline"] == {"quantizer": "none"}
    base = _row(t, quantizer="none")
    for obs in ("minmax", "entropy", "mse"):  # the fp32 row (observer=minmax) serves them all
        r = _row(t, quantizer="ptq", observer=obs)
        assert r["Δmap50_95"] == pytest.approx(r["map50_95"] - base["map50_95"])
        assert r["speedup latency_ms_p50"] == pytest.approx(
            base["latency_ms_p50"] / r["latency_ms_p50"]
        )
    assert pd.isna(_row(t, quantizer="trt_builtin")["Δmap50_95"])


def test_fp16_baseline_and_no_baseline(observer_sweep):
    df = from_records(observer_sweep)
    t = comparison_table(df, baseline="quantizer=fp16")
    fp16, mse = _row(t, quantizer="fp16"), _row(t, quantizer="ptq", observer="mse")
    assert mse["Δmap50_95"] == pytest.approx(mse["map50_95"] - fp16["map50_95"])
    assert "Δmap50_95" not in comparison_table(df, baseline=None)


def test_baseline_is_read_within_each_group(tmp_path):
    jobs = [
        {"choices": {"model": mdl, "quantizer": q}, "metrics": m(v, lat)}
        for mdl, q, v, lat in [
            ("yolov8n", "none", 0.40, 40.0),
            ("yolov8n", "ptq", 0.37, 20.0),
            ("yolov5n", "none", 0.30, 30.0),
            ("yolov5n", "ptq", 0.28, 10.0),
        ]
    ]
    t = comparison_table(from_records(write_sweep(tmp_path, jobs)))
    assert _row(t, model="yolov8n", quantizer="ptq")["Δmap50_95"] == pytest.approx(-0.03)
    assert _row(t, model="yolov5n", quantizer="ptq")["Δmap50_95"] == pytest.approx(-0.02)
    assert _row(t, model="yolov5n", quantizer="ptq")["speedup latency_ms_p50"] == pytest.approx(3.0)


def test_best_value_per_column_respects_direction(observer_sweep):
    t = comparison_table(from_records(observer_sweep))
    best = best_rows(t)
    assert t.loc[list(best["map50_95"]), "quantizer"].tolist() == ["none"]  # higher is better
    assert t.loc[list(best["latency_ms_p50"]), "observer"].tolist() == ["minmax"]  # lower
    assert "Δmap50_95" not in best  # deltas mirror their metric
    md = to_markdown(t)
    assert "**0.3990**" in md and "**22.00**" in md


def test_skipped_rows_keep_their_reason(observer_sweep):
    t = comparison_table(from_records(observer_sweep))
    skipped = _row(t, quantizer="trt_builtin")
    assert skipped["status"] == "SKIPPED" and "needs backend=tensorrt" in skipped["note"]
    assert "SKIPPED" in render(t, "md")


def test_cols_pivot_puts_a_choice_per_column_group(tmp_path):
    jobs = [
        {"choices": {"quantizer": q, "backend": b}, "metrics": m(v, lat)}
        for q, b, v, lat in [
            ("none", "onnxruntime", 0.399, 40.0),
            ("none", "torch", 0.398, 90.0),
            ("ptq", "onnxruntime", 0.380, 25.0),
            ("ptq", "torch", 0.382, 120.0),
        ]
    ]
    t = comparison_table(from_records(write_sweep(tmp_path, jobs)), cols="backend")
    assert list(t["quantizer"]) == ["none", "ptq"]
    assert _row(t, quantizer="ptq")["map50_95 [torch]"] == pytest.approx(0.382)
    assert _row(t, quantizer="ptq")["Δmap50_95 [onnxruntime]"] == pytest.approx(0.380 - 0.399)


def test_swept_config_keys_become_row_keys(tmp_path):
    jobs = [
        {"imgsz": s, "metrics": m(v, lat)} for s, v, lat in [(320, 0.30, 10.0), (640, 0.40, 40.0)]
    ]
    t = comparison_table(from_records(write_sweep(tmp_path, jobs)))
    assert "model.imgsz" in t and sorted(t["model.imgsz"]) == ["320", "640"]


def test_bad_options_name_themselves(observer_sweep):
    df = from_records(observer_sweep)
    with pytest.raises(TableError, match="--cols 'bakend'"):
        comparison_table(df, cols="bakend")
    with pytest.raises(TableError, match="--metrics"):
        comparison_table(df, metrics=["nope"])
    with pytest.raises(TableError, match="--baseline"):
        comparison_table(df, baseline="quantizer")


def test_formats(observer_sweep):
    import json

    t = comparison_table(from_records(observer_sweep))
    csv = render(t, "csv")
    assert csv.splitlines()[0].startswith("quantizer,observer,calibrator,status,map50_95")
    assert "0.399" in csv and "**" not in csv  # machine-readable: raw numbers, no marks
    js = json.loads(render(t, "json"))
    assert js["baseline"] == {"quantizer": "none"} and js["best"]["map50_95"] == [0]
    html = render(t, "html")
    assert '<td class="num best">0.3990</td>' in html
    # markdown columns line up in a terminal
    lines = to_markdown(t).split("\n\n")[0].splitlines()
    assert len({len(x) for x in lines}) == 1


def test_equivalent_skipped_jobs_fold_into_one_note(tmp_path):
    first = "/runs/0"
    jobs = [{"choices": {"quantizer": "none"}, "metrics": m(0.40, 40.0)}] + [
        {
            "choices": {"quantizer": "none", "observer": o},
            "status": "SKIPPED",
            "reason": f"equivalent to the FINISHED job in {first}: quantizer=none does not use observer",
        }
        for o in ("mse", "entropy")
    ]
    jobs += [
        {"choices": {"quantizer": "ptq", "observer": o}, "metrics": m(0.38, 20.0)}
        for o in ("mse", "entropy")
    ]
    df = from_records(write_sweep(tmp_path, jobs))
    t = comparison_table(df)
    assert list(t["quantizer"]) == ["none", "ptq", "ptq"]
    (note,) = t.attrs["notes"]
    assert "quantizer=none does not use observer" in note and "none mse, none entropy" in note
    assert len(comparison_table(df, hide_equivalent=False)) == 5


def test_folding_reads_the_records_equivalent_to_not_their_reason(tmp_path):
    jobs = [{"choices": {"quantizer": "none"}, "metrics": m(0.40, 40.0)}]
    first = str(tmp_path / "sweeps" / "demo" / "2026-01-01_00-00-00" / "0")
    jobs += [
        {
            "choices": {"quantizer": "none", "observer": o},
            "status": "SKIPPED",
            "reason": "any wording at all",
            "equivalent_to": Equivalent(first, status, ("observer",)),
        }
        for o, status in (("mse", "FINISHED"), ("entropy", "RUNNING"))
    ]
    t = comparison_table(from_records(write_sweep(tmp_path, jobs)))
    # the repeat of the FINISHED job folds into a note; the one decided while its twin was
    # still running stays a row, as before
    assert list(t["observer"]) == ["minmax", "entropy"]
    (note,) = t.attrs["notes"]
    assert "(quantizer=none does not use observer): mse" in note


def test_float_baselines_ignore_the_quantization_axes(tmp_path):
    # two sweeps: yolov5n's fp32 row was run with observer=mse, yolov8n's with minmax
    jobs = [
        {"choices": {"model": "yolov8n", "quantizer": "none"}, "metrics": m(0.40, 40.0)},
        {
            "choices": {"model": "yolov8n", "quantizer": "ptq", "observer": "entropy"},
            "metrics": m(0.37, 20.0),
        },
        {
            "choices": {"model": "yolov5n", "quantizer": "none", "observer": "mse"},
            "metrics": m(0.30, 30.0),
        },
        {
            "choices": {"model": "yolov5n", "quantizer": "ptq", "observer": "mse"},
            "metrics": m(0.29, 15.0),
        },
    ]
    t = comparison_table(from_records(write_sweep(tmp_path, jobs)))
    assert _row(t, model="yolov8n", quantizer="ptq")["Δmap50_95"] == pytest.approx(-0.03)
    assert _row(t, model="yolov5n", quantizer="ptq")["Δmap50_95"] == pytest.approx(-0.01)
