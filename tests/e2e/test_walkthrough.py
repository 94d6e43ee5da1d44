"""README's "Your first sweep" runs as written: its commands, from another directory and from
the repository root (a copy of the tree made of links, so the clone's own outputs/ stay
untouched); then the sweep twice more, as the README says to: one MLflow run per job."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from qexp.record import FINISHED, SKIPPED, find_records, read_record
from tests.conftest import ROOT

pytestmark = pytest.mark.assets


def walkthrough() -> list[list[str]]:
    """The commands of the README section's bash block."""
    section = (ROOT / "README.md").read_text().split("## Your first sweep", 1)[1]
    block = section.split("\n## ", 1)[0].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(ln) for ln in block.splitlines() if ln.strip()]


def readme_summary() -> str:
    """The sweep summary the README section shows (the code block after the commands)."""
    section = (ROOT / "README.md").read_text().split("## Your first sweep", 1)[1]
    after = section.split("\n## ", 1)[0].split("```bash\n", 1)[1].split("```", 1)[1]
    return after.split("\n```\n", 2)[1]


def _maps(summary: str) -> dict[str, tuple[float, float]]:
    """A summary's FINISHED jobs: their choices -> (mAP50-95, mAP50)."""
    found = re.findall(r"FINISHED +(\S.*?) +mAP50-95 ([0-9.]+), mAP50 ([0-9.]+)", summary)
    return {" ".join(job.split()): (float(a), float(b)) for job, a, b in found}


def _root_copy(tmp_path: Path) -> Path:
    """The repository's files, linked into a fresh folder: the root as a fresh clone has it."""
    root = tmp_path / "clone"
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("outputs", ".git", ".venv", ".qexp-home") and not entry.name.endswith(
            "_cache"
        ):
            (root / entry.name).symlink_to(entry)
    return root


@pytest.mark.parametrize(
    "where", ["another-directory", pytest.param("repo-root", marks=pytest.mark.slow)]
)
def test_first_sweep_runs_as_written(tmp_path, where):
    commands = walkthrough()
    assert [c[0] for c in commands] == ["qexp"] * len(commands), "the block holds qexp commands"
    cwd = _root_copy(tmp_path) if where == "repo-root" else tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("QEXP_OUTPUT_DIR", None)
    said = []
    for argv in commands:
        p = subprocess.run(
            [sys.executable, "-m", "qexp.cli", *argv[1:]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert p.returncode == 0, f"{shlex.join(argv)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        said.append(p.stdout)
    help_page, sweep, report = said
    assert "qexp report" in help_page and "observer" in help_page
    assert "4 jobs: 3 FINISHED, 0 FAILED, 1 SKIPPED" in sweep
    recs = [read_record(r) for r in find_records(cwd / "outputs" / "sweeps" / "first_sweep")]
    assert sorted(r.status for r in recs) == [FINISHED] * 3 + [SKIPPED]
    assert all(0 < r.metrics["map50_95"] < 1 for r in recs if r.status == FINISHED)
    for row in ("none", "ptq", "entropy", "map50_95"):
        assert row in report
    # the README quotes a fresh run: each FINISHED job's mAP as this run measures it (within
    # 0.001: another CPU's kernels, not a code change that moved the numbers)
    quoted, measured = _maps(readme_summary()), _maps(sweep[sweep.index("sweep done:") :])
    assert set(quoted) == set(measured), (quoted, measured)
    for job, maps in quoted.items():
        assert maps == pytest.approx(measured[job], abs=1e-3), (job, maps, measured[job])

    # "Run the same command again": twice more. Nothing is recomputed, and MLflow still holds
    # one run per job (each filed under the three sweeps), each artifact uploaded once, one row
    # per job in the dashboard's first view; the latest sweep's table is the same one
    for argv in (commands[1], commands[1], commands[2]):
        p = subprocess.run(
            [sys.executable, "-m", "qexp.cli", *argv[1:]],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "is missing; not logged" not in p.stdout + p.stderr
    assert p.stdout == report
    measured = {r.record_id for r in recs if r.status == FINISHED}
    for later in sorted((cwd / "outputs" / "sweeps" / "first_sweep").iterdir())[1:]:
        again = [read_record(r) for r in find_records(later)]
        reused = {r.record_id for r in again if r.status == FINISHED and r.resumed_from}
        assert reused == measured  # the same records, not measured again
    _one_run_per_job(cwd / "outputs", "first_sweep", sweeps=3)


def _one_run_per_job(out: Path, experiment: str, sweeps: int) -> None:
    from mlflow.tracking import MlflowClient

    from qexp.tracking.mlflow_view import VIEW_TAG

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    jobs = [r for r in runs if r.data.tags["qexp.kind"] == "job"]
    assert len(runs) - len(jobs) == sweeps  # a parent run per sweep
    assert len(jobs) == 4, sorted(r.info.run_name for r in jobs)  # a run per job
    dirs = sorted(str(d) for d in (out / "sweeps" / experiment).iterdir())
    for run in jobs:  # run (or skipped) in the first sweep, filed under the others too
        later = [v for k, v in run.data.tags.items() if k.startswith("qexp.also_in.")]
        assert sorted([run.data.tags["qexp.sweep_id"], *later]) == dirs
    store = out / "mlartifacts" / experiment
    onnx = [f.name for f in store.rglob("*.onnx")]
    assert len(onnx) == len(set(onnx)) == 3, onnx  # fp32 and two Q/DQ graphs, once each
    assert not list(store.glob("*/artifacts/artifacts"))  # job files at the run's root
    # the dashboard's first view ("qexp: jobs by mAP"), as MLflow's UI asks for it
    state = json.loads(json.loads(exp.tags[VIEW_TAG])["state"])
    rows = client.search_runs(
        [exp.experiment_id], state["searchFilter"], order_by=[f"{state['orderByKey']} DESC"]
    )
    keys = [(r.data.params["quantizer"], r.data.params["observer"]) for r in rows]
    assert len(keys) == len(set(keys)) == 4, keys
