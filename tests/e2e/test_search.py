"""`qexp experiment=int8_search`: a 3-trial recipe search end to end on tiny data, with real
ONNX Runtime (the qlinear deploy form), a real Optuna sqlite study and real MLflow sqlite;
then the same command again (nothing re-runs) and the written recipe reproducing its row."""

from __future__ import annotations

import json

import optuna
import pytest
from mlflow.tracking import MlflowClient

from qexp.record import FINISHED, read_record
from qexp.search.objective import speed

# 4 jobs and 3 commands: ~55 s on 2 busy cores; in the default run, as CI's one end-to-end
# search (tests/unit/search/ checks the pieces on the records of such a search)
pytestmark = [pytest.mark.assets]

CHEAP = [
    "data=tiny",
    "data.max_images=4",
    "data.calib.num=4",
    "model.imgsz=160",
    "backend.warmup=1",
    "backend.iters=3",
    "backend.threads=1",
    "backend.qlinear_calib=2",
]
SEARCH = [
    "experiment=int8_search",
    "experiment_name=search_ci",
    "~hydra.sweeper.params.ignore",  # the sensitivity ranking costs minutes: not in CI
    "hydra.sweeper.n_trials=3",
    "hydra.sweeper.n_startup_trials=2",
    "hydra.sweeper.budget_pt=100",  # 4 images: every trial within budget, so one is best
    # a known recipe first (the experiment files seed the best hand-written row this way)
    "hydra.sweeper.enqueue=[{quantizer:ptq,observer:minmax,backend.int8_form:qlinear}]",
    *CHEAP,
]


def test_a_three_trial_search(qexp):
    out = qexp.out
    first = qexp(*SEARCH)
    assert first.stdout.count("trial ") >= 3 and "trial 3/3" in first.stdout

    study = optuna.load_study(study_name="search_ci", storage=f"sqlite:///{out}/optuna.db")
    trials = study.trials
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert trials[0].params == {"quantizer": "ptq", "observer": "minmax",
                                "backend.int8_form": "qlinear"}  # fmt: skip
    (sweep,) = (out / "sweeps" / "search_ci").iterdir()
    ref = read_record(sweep / "0")
    assert ref.status == FINISHED and ref.choices["quantizer"] == "none"
    for t in trials:  # each trial's value is its record's speed against the reference's
        rec = read_record(t.user_attrs["job_dir"])
        assert rec.status == FINISHED and rec.choices["quantizer"] == t.params["quantizer"]
        assert rec.info.get("ort_int8_form") == t.params["backend.int8_form"]
        assert t.value == pytest.approx(speed(rec, ref)[1])
        assert t.user_attrs["loss_pt"] == pytest.approx(
            (ref.metrics["map50_95"] - rec.metrics["map50_95"]) * 100
        )
        lo, hi = t.user_attrs["ci_pt"]
        assert lo <= -t.user_attrs["loss_pt"] <= hi

    doc = json.loads((sweep / "search.json").read_text())
    best = doc["best"]
    assert best["speedup"] == max(t.value for t in trials)
    assert doc["counts"] == {"total": 3, "finished": 3, "within_budget": 3, "failed": 0}
    assert (sweep / "search.md").is_file() and (sweep / "search.png").is_file()
    again_timed = doc["side_by_side"]  # the best and the reference re-timed in one process
    assert again_timed["ref_ms"] > 0 and again_timed["best_ms"] > 0

    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    exp = client.get_experiment_by_name("search_ci")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("qexp.kind") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("qexp.kind") == "job"]
    distinct = {tuple(sorted(t.params.items())) for t in trials}  # a repeat is the same job
    assert len(parents) == 1 and len(jobs) == 1 + len(distinct)  # the reference + one a job
    tags = parents[0].data.tags
    assert tags["qexp.search.trials"] == "3" and tags["qexp.search.best"] == best["label"]
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}

    recipe = out / "conf" / "recipe" / "search_ci.yaml"
    text = recipe.read_text()
    assert text.startswith("# @package _global_")
    assert f"override /quantizer: {best['params']['quantizer']}" in text

    # the same command again: the study is complete, the reference is reused, nothing runs
    again = qexp(*SEARCH)
    assert "3 of 3 trials done" in again.stdout and "running 0 more" in again.stdout
    assert "already FINISHED" in again.stderr + again.stdout
    assert (
        len(optuna.load_study(study_name="search_ci", storage=f"sqlite:///{out}/optuna.db").trials)
        == 3
    )

    # the recipe reproduces the best row: the same job, so it is reused, not re-run
    cmd = doc["reproduce"].split()
    assert cmd[:4] == ["qexp", "--config-dir", str(recipe.parents[1]), "recipe=search_ci"]
    rerun = qexp(*cmd[1:])
    assert "already FINISHED" in rerun.stderr + rerun.stdout
    assert f"{best['map50_95']:.4f}" in rerun.stderr + rerun.stdout

    # a search stopped mid-wave (its trial left RUNNING) and continued with one trial more:
    # the interrupted recipe runs first, and its finished job is reused, not rebuilt
    storage = f"sqlite:///{out}/optuna.db"
    study = optuna.load_study(study_name="search_ci", storage=storage)
    study.enqueue_trial(trials[1].params)
    killed = study.ask(trials[1].distributions)
    more = qexp(*SEARCH, "hydra.sweeper.n_trials=4")
    assert "1 interrupted trials run again" in more.stdout
    assert "3 of 4 trials done" in more.stdout and "running 1 more" in more.stdout
    assert "already FINISHED" in more.stderr + more.stdout
    after = optuna.load_study(study_name="search_ci", storage=storage).trials
    assert after[killed.number].state.name == "FAIL"
    assert after[killed.number].user_attrs["why"].startswith("interrupted")
    (rerun_trial,) = after[killed.number + 1 :]
    assert rerun_trial.state.name == "COMPLETE" and rerun_trial.params == trials[1].params
