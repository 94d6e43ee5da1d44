"""Paper configs compose; the comparison puts ours beside theirs with pass / MISS / not run."""

from __future__ import annotations

import math

import pytest

from qexp.record import SKIPPED
from qexp.report import paper as P
from qexp.report.load import from_records
from tests.unit.report.conftest import m, write_sweep

PAPER = {
    "name": "toy",
    "title": "Toy table",
    "source": "https://example.org/toy",
    "needs": "nothing",
    "tolerance": 0.005,
    "cells": [
        {"row": {"quantizer": "none"}, "metric": "map50_95", "value": 0.40},
        {"row": {"quantizer": "ptq", "observer": "mse"}, "metric": "map50_95", "value": 0.37},
        {"row": {"quantizer": "qat"}, "metric": "map50_95", "value": 0.38},
        {"row": {"quantizer": "trt_builtin"}, "metric": "map50_95", "value": 0.33},
    ],
}


def test_every_paper_config_composes_with_cells():
    names = P.available()
    assert {"ultralytics_yolov8n_trt", "mmyolo_yolov8n_trt", "yolov5s_seeds"} <= set(names)
    for name in names:
        paper = P.load_paper(name)
        assert paper["name"] == name, f"conf/paper/{name}.yaml: paper.name is {paper['name']}"
        assert paper["cells"] and paper["source"] and paper["needs"]
        for cell in paper["cells"]:
            assert 0 < cell["value"] < 1, (name, cell)


def test_unknown_paper_names_the_choices():
    with pytest.raises(ValueError, match="no paper config 'nope'.*ultralytics_yolov8n_trt"):
        P.load_paper("nope")


def test_compare_pass_miss_not_run(tmp_path):
    sweep = write_sweep(
        tmp_path,
        [
            {"choices": {"quantizer": "none"}, "metrics": m(0.403, 40.0)},
            {"choices": {"quantizer": "ptq", "observer": "mse"}, "metrics": m(0.355, 20.0)},
            {
                "choices": {"quantizer": "trt_builtin", "calibrator": "minmax"},
                "status": SKIPPED,
                "reason": "TensorRT not available: no module named tensorrt",
            },
        ],
    )
    t = P.compare(from_records(sweep), PAPER)
    by_row = {r["row"]: r for _, r in t.iterrows()}
    fp32 = by_row["quantizer=none"]
    assert fp32["verdict"] == P.PASS and fp32["delta"] == pytest.approx(0.003)
    assert by_row["quantizer=ptq observer=mse"]["verdict"] == P.MISS
    qat = by_row["quantizer=qat"]
    assert qat["verdict"] == P.NOT_RUN and math.isnan(qat["ours"])
    assert "no job with these choices" in qat["note"]
    trt = by_row["quantizer=trt_builtin"]
    assert trt["verdict"] == P.NOT_RUN and "TensorRT not available" in trt["note"]
    md = P.to_markdown(t)
    assert "Source: https://example.org/toy" in md
    assert "1/4 cells within ±0.005, 1 missed, 2 not run" in md
    html = P.to_html(t)
    assert '<tr class="pass">' in html and '<tr class="miss">' in html


def test_equivalent_skipped_job_borrows_the_finished_record(tmp_path):
    first = write_sweep(
        tmp_path / "a", [{"choices": {"quantizer": "none"}, "metrics": m(0.4, 9.0)}]
    )
    reason = (
        f"equivalent to the FINISHED job in {first / '0'}: quantizer=none does not use calibrator"
    )
    sweep = write_sweep(
        tmp_path / "b",
        [
            {
                "choices": {"quantizer": "none", "calibrator": "minmax"},
                "status": SKIPPED,
                "reason": reason,
            }
        ],
    )
    t = P.compare(from_records(sweep), PAPER)
    fp32 = t[t["row"] == "quantizer=none"].iloc[0]
    assert fp32["ours"] == pytest.approx(0.4) and fp32["verdict"] == P.PASS
    assert "equivalent job" in fp32["note"]


def test_paper_from_experiment_name(tmp_path):
    sweep = write_sweep(tmp_path, [{"metrics": m(0.37, 5.0)}], experiment="paper_yolov5s_seeds")
    df = from_records(sweep)
    paper = P.paper_for(df, "paper_yolov5s_seeds", None)
    assert paper is not None and paper["name"] == "yolov5s_seeds"
    assert P.paper_for(df, "some_sweep", None) is None
