"""Records of a 2-job sweep run three times, as the runner writes them (job 0 measured in the
first sweep and resumed by the others, job 1 SKIPPED as its repeat each time), and what an
MLflow store must hold once they are logged: one run per job, a parent run per sweep."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from qexp.record import FINISHED, SKIPPED, Record
from qexp.report.load import from_mlflow

REASON = "equivalent to the FINISHED job in {}: quantizer=none does not use observer"


def _sweep(root, n: int, first=None) -> list[Record]:
    """The records of the n-th run of a 2-job sweep as the runner writes them: job 0 measured
    in the first sweep (resumed by later ones), job 1 SKIPPED as its repeat (a new record each
    time); job 0's artifact is relative to the job dir that measured it."""
    sweep = root / "sweeps" / "demo" / f"2026-01-0{n}_10-00-00"
    jobs = [sweep / "0", sweep / "1"]
    for j in jobs:
        j.mkdir(parents=True, exist_ok=True)
    measured = Record(
        record_id="rec0",
        status=FINISHED,
        experiment="demo",
        config_hash="h0",
        choices={"quantizer": "none", "observer": "minmax"},
        metrics={"map50_95": 0.4},
        artifacts={"detections": "artifacts/detections.json"},
        sweep_id=str(sweep),
        job_dir=str(jobs[0]),
        started_at="2026-01-01T10:00:00+00:00",
        duration_s=30.0,
    )
    if first is None:
        (jobs[0] / "artifacts").mkdir(exist_ok=True)
        (jobs[0] / "artifacts" / "detections.json").write_text("[]")
    else:
        measured = first.replace(
            job_dir=str(jobs[0]), sweep_id=str(sweep), resumed_from=first.job_dir
        )
    skipped = Record(
        record_id=f"skip{n}",
        status=SKIPPED,
        experiment="demo",
        config_hash="h0",
        choices={"quantizer": "none", "observer": "entropy"},
        reason=REASON.format(first.job_dir if first else jobs[0]),
        sweep_id=str(sweep),
        job_dir=str(jobs[1]),
        started_at=f"2026-01-0{n}T10:00:01+00:00",
    )
    for rec in (measured, skipped):
        rec.write(rec.job_dir)
    return [measured, skipped]


def three_sweeps(root) -> list[list[Record]]:
    first = _sweep(root, 1)
    return [first, _sweep(root, 2, first[0]), _sweep(root, 3, first[0])]


def _sweeps_of(tags: dict[str, str]) -> list[str]:
    """The sweeps a run is filed under: the one that logged it, then the later ones."""
    later = sorted(v for k, v in tags.items() if k.startswith("qexp.also_in."))
    return [tags["qexp.sweep_id"], *later]


def check_one_run_per_job(uri: str, sweeps: list[list[Record]]) -> None:
    """What a store holds after the three sweeps: a run per job, a parent per sweep."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("demo")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    jobs = [r for r in runs if r.data.tags["qexp.kind"] == "job"]
    parents = [r for r in runs if r.data.tags["qexp.kind"] == "sweep"]
    assert len(jobs) == 2, [r.data.tags["qexp.record_id"] for r in jobs]  # one run per job
    assert len(parents) == 3  # one per sweep
    ids = [s[0].sweep_id for s in sweeps]
    for run in jobs:  # in every sweep, whichever logged it first
        assert sorted(_sweeps_of(run.data.tags)) == ids
    measured = next(r for r in jobs if r.data.tags["qexp.status"] == FINISHED)
    files = [a.path for a in client.list_artifacts(measured.info.run_id)]
    assert "detections.json" in files and "artifacts" not in files  # logged once, not nested
    latest = from_mlflow(uri, "demo", latest_sweep=True)
    assert sorted(latest["status"]) == [FINISHED, SKIPPED]
    assert set(latest["sweep_id"]) == {ids[-1]}
    assert len(from_mlflow(uri, "demo")) == 6  # one row per job and sweep, as on disk
