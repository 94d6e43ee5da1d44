"""The HTML report: self-contained, holds the table, the paper and the plots; logged to MLflow."""

from __future__ import annotations

import re
import shutil

import pytest
from mlflow.tracking import MlflowClient

from qexp.record import find_records, read_record
from qexp.report.build import Options, build
from qexp.report.load import from_mlflow, from_records
from qexp.report.publish import log_report
from qexp.tracking.mlflow_sink import MlflowSink
from tests.unit.report.conftest import FIXTURES, OBSERVER_SWEEP, write_sweep


def _sweep_with_artifacts(tmp_path):
    jobs = [dict(j) for j in OBSERVER_SWEEP]
    jobs[0]["artifacts"] = {"layers": "layers.json"}
    jobs[2]["artifacts"] = {"layers": "layers.json", "sensitivity": "sensitivity.json"}
    sweep = write_sweep(tmp_path, jobs, experiment="paper_yolov5s_seeds")
    shutil.copy(FIXTURES / "layers_fp32.json", sweep / "0" / "layers.json")
    shutil.copy(FIXTURES / "layers_qdq.json", sweep / "2" / "layers.json")
    (sweep / "2" / "sensitivity.json").write_text(
        '{"metric": "mse", "scores": {"model.22.cv3": 0.9, "model.0.conv": 0.1}}'
    )
    return sweep


def test_page_is_self_contained(tmp_path):
    rep = build(from_records(_sweep_with_artifacts(tmp_path)), "paper_yolov5s_seeds")
    titles = [p.title for p in rep.plots]
    assert titles[0].startswith("map50_95 vs latency_ms_p50")
    assert "Per-layer precision of each engine" in titles
    assert any(t.startswith("Sensitivity ranking") for t in titles)
    assert rep.paper is not None  # found from the experiment name paper_<name>
    html = rep.html()
    assert html.count("data:image/png;base64,") == len(rep.plots)
    # nothing is fetched from elsewhere: no external scripts, styles or images
    assert not re.search(r'<(script|link)\b|src="(?!data:)', html)
    assert "<table" in html and "SKIPPED" in html and "YOLOv5s" in html
    written = rep.write(tmp_path / "out" / "report.html")
    assert {p.name for p in written} >= {"report.html", "pareto.png", "precision_map.png"}


def test_a_plot_that_fails_leaves_a_note(tmp_path):
    sweep = _sweep_with_artifacts(tmp_path)
    (sweep / "2" / "sensitivity.json").write_text("[1, 2")  # truncated
    rep = build(from_records(sweep), "paper_yolov5s_seeds", Options(calib_tensor="model.0.conv"))
    assert any("sensitivity plot not drawn" in n for n in rep.notes)
    assert any("calibration plot not drawn" in n and "model.0.conv" in n for n in rep.notes)
    assert "<table" in rep.html()


def test_report_logged_to_the_sweep_parent_run(tmp_path):
    sweep = _sweep_with_artifacts(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sink = MlflowSink(uri)
    # artifacts next to the store, not in ./mlruns of whatever directory pytest runs in
    art = (tmp_path / "artifacts").as_uri()
    sink.client.create_experiment("paper_yolov5s_seeds", artifact_location=art)
    for p in find_records(sweep):
        sink.log(read_record(p), p.parent)
    df = from_mlflow(uri, "paper_yolov5s_seeds")
    msgs = log_report(build(df, "paper_yolov5s_seeds"), df, uri)
    assert len(msgs) == 1 and "logged report/report.html" in msgs[0]
    parent = msgs[0].split()[-1]
    client = MlflowClient(uri)
    assert client.get_run(parent).data.tags["qexp.kind"] == "sweep"
    names = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.html", "report/pareto.png"} <= names


def test_sensitivity_csv_of_topk_jobs_ranks_like_the_analysis(tmp_path):
    from qexp.quant.sensitivity import ranking, scores
    from qexp.quant.sensitivity_report import frame
    from qexp.report.build import load_sensitivity

    layers = ["model.0.conv", "model.1.conv", "model.22.cv3.0.2"]
    rows = [
        {"layer": n, "mode": mode, "map": 0.40 - d, "mse": d, "cosine": 1 - d, "sqnr": 30 - 100 * d}
        for mode in ("single", "all_but_one")
        for n, d in zip(layers, (0.01, 0.002, 0.05), strict=True)
    ]
    result = {
        "layers": layers,
        "rows": rows,
        "images": 4,
        "reference": {
            "float": {"map": 0.41},
            "quantized": {"map": 0.35, "mse": 0.06, "cosine": 0.94, "sqnr": 24.0},
        },
    }
    csv = tmp_path / "sensitivity.csv"
    frame(result).to_csv(csv, index=False)  # what ignore=sensitivity_topk jobs attach
    got, metric = load_sensitivity(csv, "mse", "single")
    assert metric == "mse" and got == pytest.approx(scores(result, "single", "mse"))
    assert sorted(got, key=got.get, reverse=True) == ranking(result, "single", "mse")
