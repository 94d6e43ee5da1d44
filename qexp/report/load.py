"""Runs of a sweep as one pandas DataFrame, from MLflow or from records on disk.

Both sources give the same columns: one per axis (the choice), ``status``, ``reason``,
``precision``, bookkeeping (config hash, record id, sweep id, job dir, start time, run name,
when its sweep ran), ``artifacts`` (name -> path relative to the job dir) and one column per
metric.

A job a sweep resumed keeps the start time of its measurement, so the sweeps are ordered by
when they ran (``sweep_started``: the sweep's parent run in MLflow; on disk, its first job,
a resumed one counted when its record was written), not by their jobs' start times.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from qexp.config.schema import AXES
from qexp.record import find_records, read_record

STATUS = "status"
BOOKKEEPING = (
    STATUS,
    "reason",
    "precision",
    "config_hash",
    "record_id",
    "experiment",
    "sweep_id",
    "job_dir",
    "started_at",
    "sweep_started",
    "run_name",
    "run_id",
    "artifacts",
    "params",
)


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n")[0]


def from_records(root: Path, sweep: str | None = None, latest_sweep: bool = False) -> pd.DataFrame:
    """One row per result.json under ``root`` (axis choices, status, metrics)."""
    from qexp.tracking.mlflow_sink import _flat_params, run_name

    rows = []
    for p in find_records(root):
        r = read_record(p)
        seen = r.started_at
        if r.resumed_from or not seen:  # when this sweep took it: when the record was written
            seen = pd.Timestamp(p.stat().st_mtime, unit="s", tz="UTC").isoformat()
        rows.append(
            {
                **{a: r.choices.get(a) for a in AXES},
                STATUS: r.status,
                "reason": r.reason or _first_line(r.error),
                "precision": r.info.get("precision")
                or (r.config.get("quantizer") or {}).get("precision"),
                "config_hash": r.config_hash,
                "record_id": r.record_id,
                "experiment": r.experiment,
                "sweep_id": r.sweep_id,
                "job_dir": r.job_dir or str(p.parent),
                "started_at": r.started_at,
                "sweep_started": seen,
                "run_name": run_name(r),
                "artifacts": dict(r.artifacts),
                "params": {k: str(v) for k, v in _flat_params(r.config).items()},
                **r.metrics,
            }
        )
    df = pd.DataFrame(rows)
    if not df.empty:  # a sweep ran when its first job did
        group = df["sweep_id"].fillna(df["record_id"])
        df["sweep_started"] = df.groupby(group)["sweep_started"].transform(
            lambda s: min(s, key=_when)
        )
    return _select(df, sweep, latest_sweep)


def _when(iso: str) -> pd.Timestamp:
    t = pd.Timestamp(iso)
    return t.tz_convert("UTC") if t.tzinfo else t.tz_localize("UTC")


def from_mlflow(
    uri: str, experiment: str, sweep: str | None = None, latest_sweep: bool = False
) -> pd.DataFrame:
    """Job runs of an MLflow experiment (optionally one sweep: its id, or the latest)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise ValueError(f"no MLflow experiment {experiment!r} at {uri} (have: {names})")
    runs: list = []
    page = None
    while True:
        res = client.search_runs(
            [exp.experiment_id],
            filter_string="tags.`qexp.kind` = 'job'",
            max_results=1000,
            page_token=page,
        )
        runs.extend(res)
        page = res.token
        if not page:
            break
    sweeps = {
        r.data.tags.get("qexp.sweep_id"): r.info.start_time
        for r in client.search_runs(
            [exp.experiment_id], filter_string="tags.`qexp.kind` = 'sweep'", max_results=10000
        )
    }
    rows = []
    for run in runs:
        t, params = run.data.tags, run.data.params
        started = pd.Timestamp(run.info.start_time, unit="ms", tz="UTC")
        sweep_start = sweeps.get(t.get("qexp.sweep_id"))
        rows.append(
            {
                **{a: params.get(a) for a in AXES},
                STATUS: t.get("qexp.status"),
                "reason": t.get("qexp.reason") or _first_line(t.get("qexp.error")),
                "precision": params.get("quantizer.precision"),
                "config_hash": t.get("qexp.config_hash"),
                "record_id": t.get("qexp.record_id"),
                "experiment": experiment,
                "sweep_id": t.get("qexp.sweep_id"),
                "job_dir": t.get("qexp.job_dir"),
                "started_at": started.isoformat(),
                "sweep_started": (
                    pd.Timestamp(sweep_start, unit="ms", tz="UTC") if sweep_start else started
                ).isoformat(),
                "run_name": run.info.run_name,
                "run_id": run.info.run_id,
                "artifacts": _artifacts_of(t.get("qexp.job_dir")),
                "params": {k: v for k, v in params.items() if "." in k},
                **run.data.metrics,
            }
        )
    return _select(pd.DataFrame(rows), sweep, latest_sweep)


def _artifacts_of(job_dir: str | None) -> dict[str, str]:
    """The record's artifact map, read from the job dir when this machine has it."""
    if not job_dir:
        return {}
    p = Path(job_dir) / "result.json"
    try:
        return dict(json.loads(p.read_text()).get("artifacts") or {})
    except (OSError, ValueError):
        return {}


def _select(df: pd.DataFrame, sweep: str | None, latest_sweep: bool) -> pd.DataFrame:
    """One sweep (by name), the latest one (single jobs, outside any sweep, count as one
    sweep), or everything."""
    if df.empty:
        return df
    if sweep:
        df = df[df["sweep_id"].fillna("").str.rstrip("/").str.endswith(sweep.rstrip("/"))]
    elif latest_sweep:
        group = df["sweep_id"].fillna("")
        when = df["sweep_started"].map(_when).where(group != "", df["started_at"].map(_when))
        last = group.loc[when.sort_values(kind="stable", na_position="first").index[-1]]
        df = df[group == last]
    return df.sort_values("started_at", kind="stable").reset_index(drop=True)


def metric_columns(df: pd.DataFrame) -> list[str]:
    """The metric columns of a loaded frame (everything that is not an axis or bookkeeping)."""
    return [c for c in df.columns if c not in AXES and c not in BOOKKEEPING]


def artifact_path(row: pd.Series, name: str) -> Path | None:
    """A job's artifact on this machine (by record name, else by file name in the job dir)."""
    if not row.get("job_dir"):
        return None
    job_dir = Path(str(row["job_dir"]))
    arts = row.get("artifacts") or {}
    rel = arts.get(name) if isinstance(arts, dict) else None
    candidates = [Path(rel) if Path(rel).is_absolute() else job_dir / rel] if rel else []
    candidates.append(job_dir / name)
    for c in candidates:
        if c.exists():
            return c
    return None
