"""The spine end to end: a real sweep on tiny data, records, MLflow, report, resume, ingest."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from qexp.record import FAILED, FINISHED, SKIPPED, find_records, read_record

pytestmark = pytest.mark.assets
TINY = ["data=tiny", "data.max_images=4", "data.calib.num=4"]


def _records(root: Path) -> dict[tuple[str, str], object]:
    recs = [read_record(p) for p in find_records(root)]
    return {(r.choices["quantizer"], r.choices["observer"]): r for r in recs}


def _job_runs(db: Path, experiment: str):
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment} in {db}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    jobs = [r for r in runs if r.data.tags.get("qexp.kind") == "job"]
    parents = [r for r in runs if r.data.tags.get("qexp.kind") == "sweep"]
    return jobs, parents


def test_sweep_records_mlflow_report_resume(qexp):
    sweep = ["-m", "observer=minmax,percentile", "quantizer=none,ptq", "experiment_name=spine"]
    qexp(*sweep, *TINY)
    out = qexp.out
    recs = _records(out / "sweeps")
    assert len(recs) == 4, recs.keys()
    assert recs[("none", "minmax")].status == FINISHED
    assert recs[("ptq", "minmax")].status == FINISHED
    assert recs[("ptq", "percentile")].status == FINISHED
    skipped = recs[("none", "percentile")]
    assert skipped.status == SKIPPED
    assert "does not use observer" in skipped.reason
    fp32 = recs[("none", "minmax")]
    assert 0.0 < fp32.metrics["map50_95"] <= 1.0
    assert fp32.metrics["latency_ms_p50"] > 0
    assert fp32.versions["torch"] and fp32.config_hash and fp32.choices["backend"] == "onnxruntime"
    assert recs[("ptq", "minmax")].config_hash != recs[("ptq", "percentile")].config_hash

    jobs, parents = _job_runs(out / "mlflow.db", "spine")
    assert len(parents) == 1
    assert len(jobs) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
    by_record = {r.data.tags["qexp.record_id"]: r for r in jobs}
    run = by_record[fp32.record_id]
    assert run.data.params["quantizer"] == "none"
    assert run.data.metrics["map50_95"] == pytest.approx(fp32.metrics["map50_95"])
    arts = {
        a.path
        for a in MlflowClient(f"sqlite:///{out / 'mlflow.db'}").list_artifacts(run.info.run_id)
    }
    assert {"result.json", "config.yaml"} <= arts

    rep = qexp("report", "--experiment", "spine", "--uri", f"sqlite:///{out / 'mlflow.db'}")
    assert "percentile" in rep.stdout and "map50_95" in rep.stdout and "SKIPPED" in rep.stdout

    # resume (the same sweep again: nothing recomputed, one MLflow run per job) is checked on
    # the README's first sweep, run three times: tests/e2e/test_walkthrough.py


def test_failed_job_does_not_stop_sweep(qexp, assets):
    bad = "/nonexistent/weights.pt"
    p = qexp(
        "-m",
        f"model.weights={bad},{assets}/weights/yolov8n-coco-from-ovint8.pt",
        *TINY,
        check=False,
    )
    assert p.returncode == 1  # the sweep goes on, and says it had a failure
    assert "2 jobs: 1 FINISHED, 1 FAILED, 0 SKIPPED" in p.stdout
    recs = [read_record(r) for r in find_records(qexp.out / "sweeps")]
    assert sorted(r.status for r in recs) == [FAILED, FINISHED]
    failed = next(r for r in recs if r.status == FAILED)
    assert bad in failed.error


def test_single_failed_job_exits_nonzero_with_record(qexp):
    p = qexp("model.weights=/nonexistent/weights.pt", *TINY, check=False)
    assert p.returncode == 1
    (rec,) = [read_record(r) for r in find_records(qexp.out / "runs")]
    assert rec.status == FAILED and "/nonexistent/weights.pt" in rec.error


def test_invalid_combinations_are_skipped_without_loading(qexp):
    p = qexp("-m", "quantizer=none", "quantizer.precision=int8", "model.weights=/not/loaded.pt")
    assert p.returncode == 0  # all SKIPPED: nothing failed (README, exit codes), and it says so
    assert "nothing was measured: every job was SKIPPED" in p.stdout
    (rec,) = [read_record(r) for r in find_records(qexp.out / "sweeps")]
    assert rec.status == SKIPPED and "precision" in rec.reason


def test_tensorrt_job_skipped_without_tensorrt(qexp):
    p = qexp("backend=tensorrt", *TINY, check=False)
    (rec,) = [read_record(r) for r in find_records(qexp.out / "runs")]
    assert rec.status == SKIPPED, rec
    assert rec.reason.startswith("TensorRT not available")
    assert "Traceback" not in p.stderr


def test_ingest_is_idempotent(qexp):
    qexp("-m", "quantizer=none,fp16", "tracking=none", *TINY)
    out = qexp.out
    assert not (out / "mlflow.db").exists()
    uri = f"sqlite:///{out / 'ingested.db'}"
    first = qexp("ingest", str(out / "sweeps"), "--uri", uri)
    assert "ingested 2 new, 0 already present" in first.stdout
    second = qexp("ingest", str(out / "sweeps"), "--uri", uri)
    assert "ingested 0 new, 2 already present" in second.stdout
    jobs, parents = _job_runs(out / "ingested.db", "default")
    assert len(jobs) == 2 and len(parents) == 1
