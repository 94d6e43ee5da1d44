"""A sweep under a new experiment_name resumes the FINISHED jobs of another experiment (the
name is not part of the config hash) and must still show them: in its own MLflow experiment
and parent run (with their artifacts, read from the job dir that measured them), in `qexp
report --experiment NEW`, and through `qexp ingest` of its dir, idempotently. The records on
disk stay the source of truth. (The same sweep run three times under one name: test_walkthrough.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from qexp.record import FINISHED, SKIPPED, find_records, read_record
from qexp.report.cli import main as report_main
from qexp.tracking.ingest import IngestCount, ingest
from tests.conftest import CHEAP_JOB

pytestmark = pytest.mark.assets
# one real job (observer=minmax) and its equivalent (quantizer=none does not read observer)
SWEEP = ["-m", "quantizer=none", "observer=minmax,entropy", *CHEAP_JOB]


def _records(sweeps: Path) -> dict[str, object]:
    return {r.choices["observer"]: r for r in map(read_record, find_records(sweeps))}


def _runs(db: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {db}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    jobs = [r for r in runs if r.data.tags.get("qexp.kind") == "job"]
    parents = [r for r in runs if r.data.tags.get("qexp.kind") == "sweep"]
    return jobs, parents


def test_a_new_experiment_logs_the_jobs_it_resumed(qexp, capsys):
    out = qexp.out
    qexp(*SWEEP, "experiment_name=first")
    again = qexp(*SWEEP, "experiment_name=second")
    log = again.stderr + again.stdout
    assert "already FINISHED" in log and "is missing; not logged" not in log

    first, second = _records(out / "sweeps" / "first"), _records(out / "sweeps" / "second")
    done, resumed = first["minmax"], second["minmax"]
    assert done.status == FINISHED and second["entropy"].status == SKIPPED
    # not run again: the same record (id, metrics, times), filed under the new sweep
    assert resumed.record_id == done.record_id and resumed.metrics == done.metrics
    assert (resumed.started_at, resumed.duration_s) == (done.started_at, done.duration_s)
    assert resumed.resumed_from == done.job_dir and resumed.experiment == "second"
    assert Path(resumed.sweep_id).parent.name == "second"

    db = out / "mlflow.db"
    jobs, parents = _runs(db, "second")
    assert len(parents) == 1 and len(jobs) == 2
    run = next(r for r in jobs if r.data.tags["qexp.record_id"] == done.record_id)
    assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert run.data.tags["qexp.resumed_from"] == done.job_dir
    assert run.data.metrics["map50_95"] == pytest.approx(done.metrics["map50_95"])
    # the run in this experiment has the job's files: the new job dir has none of them
    names = {a.path for a in MlflowClient(f"sqlite:///{db}").list_artifacts(run.info.run_id)}
    made = {Path(rel).name for rel in done.artifacts.values()}
    assert {"result.json", "config.yaml"} | made <= names, (made, names)
    first_jobs, _ = _runs(db, "first")
    assert [r.data.tags["qexp.record_id"] for r in first_jobs].count(done.record_id) == 1

    # (report and ingest in this process: the same code as `qexp report|ingest`, seconds less)
    assert report_main(["--experiment", "second", "--uri", f"sqlite:///{db}"]) == 0
    out_text = capsys.readouterr().out
    assert f"{done.metrics['map50_95']:.4f}" in out_text, out_text

    # ingest of the new sweep's dir (into a fresh store) logs the resumed job there too,
    # once; a record an earlier qexp wrote with the experiment it was taken from lands in
    # the experiment its job ran under (its config.yaml)
    path = Path(resumed.job_dir) / "result.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "experiment": "first"}))
    fresh = out / "ingested.db"
    sweep_dir = out / "sweeps" / "second"
    assert ingest([sweep_dir], uri=f"sqlite:///{fresh}") == IngestCount(logged=2)
    assert ingest([sweep_dir], uri=f"sqlite:///{fresh}") == IngestCount(present=2)
    jobs, parents = _runs(fresh, "second")
    assert len(parents) == 1 and len(jobs) == 2
    assert done.record_id in {r.data.tags["qexp.record_id"] for r in jobs}
