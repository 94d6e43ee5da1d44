"""Runs of a sweep as one pandas DataFrame, from MLflow or from records on disk."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qexp.config.schema import AXES
from qexp.record import find_records, read_record

STATUS = "status"


def from_records(root: Path) -> pd.DataFrame:
    """One row per result.json under ``root`` (axis choices, status, metrics)."""
    rows = []
    for p in find_records(root):
        r = read_record(p)
        rows.append(
            {
                **{a: r.choices.get(a) for a in AXES},
                STATUS: r.status,
                "reason": r.reason or (r.error or "").split("\n")[0],
                "config_hash": r.config_hash,
                "record_id": r.record_id,
                "experiment": r.experiment,
                "sweep_id": r.sweep_id,
                "job_dir": r.job_dir,
                "started_at": r.started_at,
                **r.metrics,
            }
        )
    return pd.DataFrame(rows)


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
    runs = []
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
    rows = []
    for run in runs:
        t = run.data.tags
        rows.append(
            {
                **{a: run.data.params.get(a) for a in AXES},
                STATUS: t.get("qexp.status"),
                "reason": t.get("qexp.reason") or (t.get("qexp.error") or "").split("\n")[0],
                "config_hash": t.get("qexp.config_hash"),
                "record_id": t.get("qexp.record_id"),
                "experiment": experiment,
                "sweep_id": t.get("qexp.sweep_id"),
                "job_dir": t.get("qexp.job_dir"),
                "started_at": pd.Timestamp(run.info.start_time, unit="ms").isoformat(),
                "run_id": run.info.run_id,
                **run.data.metrics,
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if sweep:
        df = df[df["sweep_id"].fillna("").str.endswith(sweep)]
    elif latest_sweep and df["sweep_id"].notna().any():
        last = df.dropna(subset=["sweep_id"]).sort_values("started_at")["sweep_id"].iloc[-1]
        df = df[df["sweep_id"] == last]
    return df.sort_values("started_at").reset_index(drop=True)
