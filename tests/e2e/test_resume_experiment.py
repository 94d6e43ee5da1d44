"""Resume, as MLflow shows it (real CLI, real Hydra, a real sqlite store).

The README's first sweep (made cheap) run three times is still 4 jobs: one MLflow run each,
filed under every sweep that has it, each artifact uploaded once, one row per job in the
dashboard's first view, and `qexp report` of the latest sweep the same from MLflow as from its
records. A sweep under a new experiment_name resumes the FINISHED jobs of the other one (the
name is not part of the config hash) and must still show them: in its own MLflow experiment and
parent run, in `qexp report --experiment NEW`, and through `qexp ingest` of its dir,
idempotently. The records on disk stay the source of truth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from qexp.record import FINISHED, SKIPPED, find_records, read_record
from qexp.report.cli import main as report_main
from qexp.tracking.ingest import IngestCount, ingest
from qexp.tracking.mlflow_view import VIEW_TAG
from tests.conftest import ASSETS, CHEAP_JOB, ROOT

pytestmark = pytest.mark.assets
# the README's first sweep, made cheap: 4 jobs, none x entropy SKIPPED as none x minmax
FIRST_SWEEP = ["-m", "quantizer=none,ptq", "observer=minmax,entropy", *CHEAP_JOB]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, shared_cache):
    """outputs/ after the first sweep ran three times as first_sweep, then once as second;
    with the output of each run."""
    out = tmp_path_factory.mktemp("resume") / "outputs"
    env = dict(os.environ, QEXP_ASSETS=str(ASSETS), PYTHONUNBUFFERED="1")
    logs = []
    for name in ("first_sweep",) * 3 + ("second",):
        cmd = [sys.executable, "-m", "qexp.cli", *FIRST_SWEEP, f"experiment_name={name}"]
        cmd += [f"paths.output_dir={out}", f"paths.cache_dir={shared_cache}"]
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
        logs.append(p.stdout + p.stderr)
    return out, logs


def _records(sweep: Path) -> dict[tuple[str, str], object]:
    recs = map(read_record, find_records(sweep))
    return {(r.choices["quantizer"], r.choices["observer"]): r for r in recs}


def _runs(db: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {db}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    jobs = [r for r in runs if r.data.tags.get("qexp.kind") == "job"]
    parents = [r for r in runs if r.data.tags.get("qexp.kind") == "sweep"]
    return jobs, parents


def test_the_first_sweep_three_times_is_four_runs_and_each_artifact_once(sweeps, capsys):
    out, logs = sweeps
    for log in logs[1:]:
        assert "already FINISHED" in log and "is missing; not logged" not in log
    db = out / "mlflow.db"
    jobs, parents = _runs(db, "first_sweep")
    assert len(parents) == 3  # a parent run per sweep
    assert len(jobs) == 4, sorted(r.info.run_name for r in jobs)  # a run per job
    dirs = sorted(str(p) for p in (out / "sweeps" / "first_sweep").iterdir())
    for run in jobs:  # measured (or skipped) in the first sweep, filed under all three
        later = [v for k, v in run.data.tags.items() if k.startswith("qexp.also_in.")]
        assert sorted([run.data.tags["qexp.sweep_id"], *later]) == dirs

    # each file uploaded once, at the root of its run (not artifacts/artifacts/)
    store = out / "mlartifacts" / "first_sweep"
    onnx = sorted(p.name for p in store.rglob("*.onnx"))
    assert len(onnx) == 3 and len(set(onnx)) == 3, onnx  # fp32 + two Q/DQ graphs
    assert not list(store.glob("*/artifacts/artifacts"))

    # the dashboard's first view ("qexp: jobs by mAP"): one row per job, best mAP first
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("first_sweep")
    state = json.loads(json.loads(exp.tags[VIEW_TAG])["state"])
    rows = client.search_runs(
        [exp.experiment_id],
        filter_string=state["searchFilter"],
        order_by=[f"{state['orderByKey']} DESC"],
    )
    keys = [(r.data.params["quantizer"], r.data.params["observer"]) for r in rows]
    assert len(keys) == 4 and len(set(keys)) == 4, keys
    maps = [r.data.metrics.get("map50_95", -1.0) for r in rows]
    assert maps == sorted(maps, reverse=True)

    # the latest sweep's table from MLflow is its records' table: 3 FINISHED jobs (reused)
    assert report_main(["--experiment", "first_sweep", "--uri", f"sqlite:///{db}"]) == 0
    from_mlflow = capsys.readouterr().out
    assert report_main(["--records", dirs[-1]]) == 0
    assert capsys.readouterr().out == from_mlflow
    table = [line for line in from_mlflow.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 3, from_mlflow  # the header and 3 rows


def test_a_new_experiment_logs_the_jobs_it_resumed(sweeps, capsys):
    out, logs = sweeps
    first = _records(sorted((out / "sweeps" / "first_sweep").iterdir())[0])
    second = _records(out / "sweeps" / "second")
    done, resumed = first[("ptq", "minmax")], second[("ptq", "minmax")]
    assert done.status == FINISHED and second[("none", "entropy")].status == SKIPPED
    # not run again: the same record (id, metrics, times), filed under the new sweep
    assert resumed.record_id == done.record_id and resumed.metrics == done.metrics
    assert (resumed.started_at, resumed.duration_s) == (done.started_at, done.duration_s)
    assert resumed.resumed_from == done.job_dir and resumed.experiment == "second"
    assert Path(resumed.sweep_id).parent.name == "second"

    db = out / "mlflow.db"
    jobs, parents = _runs(db, "second")
    assert len(parents) == 1 and len(jobs) == 4
    run = next(r for r in jobs if r.data.tags["qexp.record_id"] == done.record_id)
    assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert run.data.tags["qexp.resumed_from"] == done.job_dir
    assert run.data.metrics["map50_95"] == pytest.approx(done.metrics["map50_95"])
    # its artifacts, read from the job dir that measured it, are in this experiment's run
    names = {a.path for a in MlflowClient(f"sqlite:///{db}").list_artifacts(run.info.run_id)}
    assert {"result.json", "config.yaml"} < names and any(n.endswith(".onnx") for n in names)
    first_jobs, _ = _runs(db, "first_sweep")
    assert [r.data.tags["qexp.record_id"] for r in first_jobs].count(done.record_id) == 1

    # (report and ingest in this process: the same code as `qexp report|ingest`, seconds less)
    assert report_main(["--experiment", "second", "--uri", f"sqlite:///{db}"]) == 0
    out_text = capsys.readouterr().out
    assert f"{done.metrics['map50_95']:.4f}" in out_text, out_text

    # ingest of the new sweep's dir (into a fresh store) logs the resumed jobs there too,
    # once; a record an earlier qexp wrote with the experiment it was taken from lands in
    # the experiment its job ran under (its config.yaml)
    path = Path(resumed.job_dir) / "result.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "experiment": "first_sweep"}))
    fresh = out / "ingested.db"
    sweep_dir = out / "sweeps" / "second"
    assert ingest([sweep_dir], uri=f"sqlite:///{fresh}") == IngestCount(logged=4)
    assert ingest([sweep_dir], uri=f"sqlite:///{fresh}") == IngestCount(present=4)
    jobs, parents = _runs(fresh, "second")
    assert len(parents) == 1 and len(jobs) == 4
    assert done.record_id in {r.data.tags["qexp.record_id"] for r in jobs}
