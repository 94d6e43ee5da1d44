"""What the MLflow UI is given to show (a real sqlite store; the browser view itself is
checked in tests/e2e/test_mlflow_ui.py): real job durations, SKIPPED not shown as a crash,
the qexp view on every experiment, MLflow's empty Default out of the way."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from qexp.record import FINISHED, SKIPPED, Record
from qexp.tracking import mlflow_view as V
from qexp.tracking.mlflow_sink import MlflowSink


def _record(i: int, status: str, sweep, **kw) -> Record:
    return Record(
        record_id=f"rec{i}",
        status=status,
        experiment="demo",
        config_hash=f"h{i}",
        choices={"model": "yolov8n", "quantizer": "none" if i == 0 else "fp16"},
        metrics={"map50_95": 0.4} if status == FINISHED else {},
        sweep_id=str(sweep),
        job_name=f"qexp#{i}",
        started_at=f"2026-01-01T10:0{i}:00+00:00",
        duration_s=75.25 if status == FINISHED else 0.4,
        **kw,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow")
    sink = MlflowSink(f"sqlite:///{d / 'mlflow.db'}")
    sweep = d / "sweeps" / "demo" / "2026-01-01_10-00-00"
    reason = "quantizer=fp16 needs backend=tensorrt"
    ids = [
        sink.log(_record(0, FINISHED, sweep)),
        sink.log(_record(1, SKIPPED, sweep, reason=reason)),
    ]
    return sink, ids


def test_runs_last_as_long_as_their_jobs(store):
    sink, (finished, skipped) = store
    run = sink.client.get_run(finished).info
    assert run.start_time == 1767261600000  # the record's started_at, not the logging time
    assert run.end_time - run.start_time == 75250
    assert sink.client.get_run(skipped).info.end_time == 1767261660400
    parent = sink.client.get_run(sink.client.get_run(finished).data.tags["mlflow.parentRunId"])
    # the sweep's run spans its jobs: from the first one's start to the latest end
    assert (parent.info.start_time, parent.info.end_time) == (run.start_time, run.end_time)


def test_skipped_is_not_a_killed_run(store):
    sink, (_, skipped) = store
    run = sink.client.get_run(skipped)
    assert run.info.status == "FINISHED"  # MLflow's KILLED reads as a crash in the UI
    assert run.data.tags["qexp.status"] == "SKIPPED"
    assert "needs backend=tensorrt" in run.data.tags["qexp.reason"]
    assert run.data.tags["mlflow.note.content"].startswith("**SKIPPED** (not run)")
    assert run.data.tags["qexp.sweep"] == "2026-01-01_10-00-00"


def test_experiment_carries_the_qexp_view_and_default_is_hidden(store):
    sink, _ = store
    exp = sink.client.get_experiment_by_name("demo")
    saved = json.loads(exp.tags[V.VIEW_TAG])
    assert saved["name"] == V.VIEW_NAME
    state = json.loads(saved["state"])
    assert state["selectedColumns"][:4] == [
        "tags.`qexp.status`",
        "attributes.`Duration`",
        "metrics.`map50_95`",
        "metrics.`map50`",
    ]
    assert "metrics.`latency_ms_p50`" in state["selectedColumns"]
    assert state["orderByKey"] == "metrics.`map50_95`"
    assert "demo" in exp.tags[V.NOTE_TAG]
    assert sink.client.get_experiment("0").lifecycle_stage == "deleted"
    names = [e.name for e in sink.client.search_experiments()]
    assert names == ["demo"]


def test_older_experiments_get_the_view_and_default_with_runs_stays(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_run("0")  # someone uses MLflow's Default: it stays
    client.create_experiment("old", artifact_location=(tmp_path / "a").as_uri())
    sink = MlflowSink(uri)
    sink.experiment_id("old")
    assert V.VIEW_TAG in sink.client.get_experiment_by_name("old").tags
    assert not V.hide_empty_default(sink.client)
    assert sink.client.get_experiment("0").lifecycle_stage == "active"


def test_logging_is_idempotent_per_sweep(store, tmp_path):
    sink, (finished, _) = store
    again = _record(0, FINISHED, sink.client.get_run(finished).data.tags["qexp.sweep_id"])
    assert sink.log(again) == finished


def test_runs_url_opens_the_training_view():
    url = V.runs_url("http://127.0.0.1:5000/", "7")
    assert url == (
        "http://127.0.0.1:5000/#/experiments/7/runs"
        "?workflowType=machine_learning&viewStateShareKey=qexp"
    )
