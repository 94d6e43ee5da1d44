"""A paper config end to end on the CPU: the sweep runs, the side-by-side table is printed,
the HTML report lands in the sweep dir and on the sweep's MLflow parent run."""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from qexp.record import FINISHED, SKIPPED, find_records, read_record

pytestmark = pytest.mark.assets
# tiny settings: 2 images at 320 px, 2 calibration images, a 3-iteration latency benchmark
TINY = [
    "data=tiny",
    "data.max_images=2",
    "data.calib.num=2",
    "model.imgsz=320",
    "backend.warmup=1",
    "backend.iters=3",
]


def test_paper_smoke_prints_ours_beside_theirs(qexp):
    p = qexp("paper=ultralytics_yolov8n_trt_smoke", *TINY)
    out = qexp.out
    recs = {r.choices["quantizer"]: r for r in map(read_record, find_records(out / "sweeps"))}
    assert set(recs) == {"none", "fp16", "ptq", "trt_builtin"}
    assert recs["none"].status == FINISHED and recs["ptq"].status == FINISHED
    assert recs["fp16"].status == SKIPPED and "fp16" in recs["fp16"].reason
    assert recs["trt_builtin"].status == SKIPPED  # TensorRT's own INT8: on a GPU
    assert {r.experiment for r in recs.values()} == {"paper_ultralytics_yolov8n_trt_smoke"}

    # the side-by-side table: theirs, ours, delta and a verdict per published cell
    text = p.stdout
    assert "| row" in text and "theirs" in text and "ours" in text and "verdict" in text
    fp32 = re.search(r"\| quantizer=none +\| fp32 +\| map50_95 +\| +0\.4049 \| +(\S+) \|", text)
    assert fp32, text
    assert float(fp32.group(1)) == pytest.approx(recs["none"].metrics["map50_95"], abs=1e-4)
    assert "Ran on: model=yolov8n, data=tiny" in text
    assert re.search(r"\d/4 cells within ±0\.005", text)
    # the page measured val2017, this the 206-image subset: Δs vs the fp32 row, side by side
    assert "#### Δ vs the quantizer=none row, ours beside the paper's" in text
    assert "The data differ from the paper's (theirs: COCO val2017" in text
    ptq = re.search(r"\| quantizer=ptq \(theirs: TensorRT INT8 MinMax\) +\| map50_95 +\| +0\.3300 \|"
                    r" +(\S+) \| +-4\.00 \| +(\S+) \|", text)  # fmt: skip
    assert ptq, text
    ours = (recs["ptq"].metrics["map50_95"] - recs["none"].metrics["map50_95"]) * 100
    assert float(ptq.group(2)) == pytest.approx(ours, abs=0.006)
    # and the sweep's own comparison table, fp16 SKIPPED with its reason
    assert re.search(r"\| fp16 +\| SKIPPED", text)

    sweep_dir = next((out / "sweeps" / "paper_ultralytics_yolov8n_trt_smoke").iterdir())
    html = (sweep_dir / "report" / "report.html").read_text()
    assert "Smoke test of ultralytics_yolov8n_trt" in html and "data:image/png;base64," in html
    assert (sweep_dir / "report.md").exists()

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("paper_ultralytics_yolov8n_trt_smoke")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`qexp.kind` = 'sweep'")
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/report.html" in arts

    # `qexp report` finds the paper from the experiment name, later, from MLflow
    rep = qexp(
        "report",
        "--experiment",
        "paper_ultralytics_yolov8n_trt_smoke",
        "--uri",
        f"sqlite:///{out / 'mlflow.db'}",
    )
    assert "Smoke test of ultralytics_yolov8n_trt" in rep.stdout and "verdict" in rep.stdout
