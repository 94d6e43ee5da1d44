"""Paper configs compose; the comparison puts ours beside theirs with pass / MISS / not run."""

from __future__ import annotations

import math

import pytest

from qexp.record import SKIPPED
from qexp.report import paper as P
from qexp.report.load import from_records
from tests.conftest import ROOT
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


@pytest.fixture(scope="module")
def real_trt():
    """A real TensorRT sweep's records (yolov8n on the 206-image subset, 4xH100)."""
    return from_records(ROOT / "tests" / "fixtures" / "sweep_tensorrt_4xh100")


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


SMOKES = ["mmyolo_yolov8n_trt_smoke", "ultralytics_yolov8n_trt_smoke", "yolov5s_seeds_smoke"]


@pytest.mark.parametrize("name", SMOKES)
def test_smoke_papers_run_on_tensorrt(compose, name):
    """`qexp paper=<name> backend=tensorrt`: every job of its sweep composes, validates and is
    one the quantizer makes and TensorRT takes (a missing optional library aside)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from qexp.config.validate import validate
    from qexp.runner import plugins_of
    from tests.conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        h = hydra_compose("config", [f"paper={name}"], return_hydra_config=True)
    jobs = [q.strip() for q in str(h.hydra.sweeper.params.quantizer).split(",")]
    assert len(jobs) >= 3
    for q in jobs:
        s = validate(compose([f"paper={name}", "backend=tensorrt", f"quantizer={q}"]))
        assert s.backend.name == "tensorrt"
        quantizer, backend = plugins_of(s)
        out = quantizer.output()
        assert out in quantizer.produces and backend.accepts.refusal(out) is None, (name, q)
        why = quantizer.check(s)
        assert why is None or "needs MQBench" in why, (name, q, why)
    # its data differ from the paper's: it says so and compares Δs vs the reference row
    paper = P.load_paper(name)
    assert paper["compare"] == P.DELTA and paper["published"] and paper["published_on"]
    ran = {q for q in jobs} | {"none"}
    for cell in paper["published"]:
        assert cell["row"]["quantizer"] in ran, (name, cell)


def test_a_delta_paper_needs_its_numbers_and_reference_row():
    P.check(PAPER)  # compare=value (the default): nothing more to have
    bad = {**PAPER, "compare": "delta", "published": []}
    with pytest.raises(ValueError, match="needs the paper's numbers"):
        P.check(bad)
    bad["published"] = [{"row": {"quantizer": "ptq"}, "metric": "map50_95", "value": 0.37}]
    with pytest.raises(ValueError, match=r"quantizer=none row; published has no such cell"):
        P.check(bad)


def test_on_other_data_each_rows_delta_is_set_beside_the_papers(real_trt):
    """The ultralytics smoke paper on the records of a real TensorRT sweep (yolov8n, the
    206-image subset, 4xH100): the page's numbers are val2017's, so the report sets our Δ vs
    the fp32 engine beside theirs, and says why."""
    df = real_trt[real_trt["calibrator"] != "entropy2"]  # the page's INT8: MinMax calibrator
    t = P.compare(df, P.load_paper("ultralytics_yolov8n_trt_smoke"))
    by = {r["row"]: r for _, r in t.iterrows() if r["metric"] == "map50_95"}
    assert by["quantizer=none"]["verdict"] == P.PASS  # the subset's own fp32 number
    assert by["quantizer=ptq"]["verdict"] == P.NOT_RUN  # its Q/DQ engine did not build
    d = {x["row"]: x for x in t.attrs["deltas"]}
    assert d["quantizer=none"]["reference"] and d["quantizer=none"]["ours"] == pytest.approx(
        0.404935, abs=1e-6
    )
    # by hand from the records: fp32 engine 0.404935, fp16 0.404301, trt_builtin 0.398319
    fp16, trt = d["quantizer=fp16"], d["quantizer=trt_builtin"]
    assert fp16["their_delta"] == pytest.approx(0.0) and fp16["our_delta"] == pytest.approx(
        -0.0634, abs=1e-4
    )
    assert trt["their_delta"] == pytest.approx(-4.0) and trt["our_delta"] == pytest.approx(
        -0.6616, abs=1e-4
    )
    assert trt["gap"] == pytest.approx(3.3384, abs=1e-4)
    ptq = d["quantizer=ptq (theirs: TensorRT INT8 MinMax)"]
    assert math.isnan(ptq["ours"]) and ptq["note"].startswith("FAILED: TensorRTError")
    md = P.to_markdown(t)
    assert "#### Δ vs the quantizer=none row, ours beside the paper's" in md
    assert "The data differ from the paper's (theirs: COCO val2017 (5000 images)" in md
    assert "ours: model=yolov8n, data=coco_val, backend=tensorrt)" in md
    row = next(line for line in md.splitlines() if line.startswith("| quantizer=trt_builtin"))
    assert [c.strip() for c in row.strip("|").split("|")][2:7] == [
        "0.3300", "0.3983", "-4.00", "-0.66", "+3.34"
    ]  # fmt: skip
    html = P.to_html(t)
    assert "<h3>Δ vs the quantizer=none row, ours beside the paper&#x27;s</h3>" in html
    assert "+3.34" in html
