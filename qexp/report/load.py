"""Runs of a sweep as one pandas DataFrame, from MLflow or from records on disk.

Both sources give the same columns: one per axis (the choice), ``recipe`` (the frontier row a
job was launched as, read from its overrides; None for most jobs), ``status``, ``reason``,
``equivalent_to`` (the job a SKIPPED one repeats, :class:`qexp.record.Equivalent`),
``precision``, bookkeeping (config hash, record id, sweep id, job dir, start time, run name,
when its sweep ran), ``artifacts`` (name -> path relative to the job dir), where this machine
has the job's files (``record_dir``: beside the result.json read, or the MLflow run's local
artifact dir; ``tracking_uri`` + ``run_id``: a run whose artifacts are downloaded on demand)
and one column per metric. :func:`artifact_path` finds a job's file in all those places, so
records ingested from another machine (whose ``job_dir`` is a path over there) keep theirs.

A job a sweep resumed keeps the start time of its measurement, so the sweeps are ordered by
when they ran (``sweep_started``: the sweep's parent run in MLflow; on disk, its first job,
a resumed one counted when its record was written), not by their jobs' start times. In MLflow
such a job is one run filed under every sweep that has it: one row per sweep, as on disk.

A record that cannot be read is left out with a warning (as ``qexp ingest`` does); the frame's
``attrs["unreadable"]`` lists them, for the report to say so.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from qexp.config.axes import AXES, RECIPE
from qexp.record import (
    RECORD_FILE,
    SKIPPED,
    Equivalent,
    equivalent_from_reason,
    find_records,
    first_line,
    read_record,
)

log = logging.getLogger("qexp")

STATUS = "status"
BOOKKEEPING = (
    STATUS,
    "reason",
    "equivalent_to",
    "precision",
    "config_hash",
    "record_id",
    "experiment",
    "sweep_id",
    "job_dir",
    "resumed_from",
    "started_at",
    "sweep_started",
    "run_name",
    "run_id",
    "artifacts",
    "record_dir",
    "tracking_uri",
    "params",
)


def from_records(root: Path, sweep: str | None = None, latest_sweep: bool = False) -> pd.DataFrame:
    """One row per result.json under ``root`` (axis choices, status, metrics)."""
    from qexp.tracking.mlflow_sink import flat_params, run_name

    rows, unreadable = [], []
    for p in find_records(root):
        try:
            r = read_record(p)
        except ValueError as e:
            log.warning("%s; left out of the report", e)
            unreadable.append(str(e))
            continue
        seen = r.started_at
        if r.resumed_from or not seen:  # when this sweep took it: when the record was written
            seen = pd.Timestamp(p.stat().st_mtime, unit="s", tz="UTC").isoformat()
        rows.append(
            {
                **{a: r.choices.get(a) for a in AXES},
                RECIPE: recipe_of(r.overrides),
                STATUS: r.status,
                "reason": r.reason or first_line(r.error),
                "equivalent_to": r.equivalent_to,
                "precision": r.info.get("precision")
                or (r.config.get("quantizer") or {}).get("precision"),
                "config_hash": r.config_hash,
                "record_id": r.record_id,
                "experiment": r.experiment,
                "sweep_id": r.sweep_id,
                "job_dir": r.job_dir or str(p.parent),
                "resumed_from": r.resumed_from,
                "started_at": r.started_at,
                "sweep_started": seen,
                "run_name": run_name(r),
                "artifacts": dict(r.artifacts),
                "record_dir": str(p.parent),
                "tracking_uri": None,
                "params": {k: str(v) for k, v in flat_params(r.config).items()},
                **r.metrics,
            }
        )
    df = pd.DataFrame(rows)
    if not df.empty:  # a sweep ran when its first job did
        group = df["sweep_id"].fillna(df["record_id"])
        df["sweep_started"] = df.groupby(group)["sweep_started"].transform(
            lambda s: min(s, key=_when)
        )
    out = _select(df, sweep, latest_sweep)
    out.attrs["unreadable"] = unreadable
    return out


def _when(iso: str) -> pd.Timestamp:
    t = pd.Timestamp(iso)
    return t.tz_convert("UTC") if t.tzinfo else t.tz_localize("UTC")


def from_mlflow(
    uri: str, experiment: str, sweep: str | None = None, latest_sweep: bool = False
) -> pd.DataFrame:
    """Job runs of an MLflow experiment (optionally one sweep: its id, or the latest)."""
    from mlflow.tracking import MlflowClient

    from qexp.tracking.mlflow_view import DEFAULT_EXPERIMENT_ID

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        # a read: never create the store (MLflow would make an empty mlflow.db here)
        raise ValueError(
            f"no MLflow store at {uri[len('sqlite:///') :]} (run a job from this directory "
            "first, or give --uri, or --records DIR)"
        )
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage != "active":
        names = [
            e.name for e in client.search_experiments() if e.experiment_id != DEFAULT_EXPERIMENT_ID
        ]
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
    from qexp.tracking.mlflow_sink import TAG_EQUIVALENT, TAG_REASON, sweeps_of

    rows = []
    for run in runs:
        t, params = run.data.tags, run.data.params
        started = pd.Timestamp(run.info.start_time, unit="ms", tz="UTC")
        reason = t.get(TAG_REASON) or first_line(t.get("qexp.error"))
        row = {
            **{a: params.get(a) for a in AXES},
            RECIPE: None,
            STATUS: t.get("qexp.status"),
            "reason": reason,
            "equivalent_to": _equivalent(t.get(TAG_EQUIVALENT), t.get("qexp.status"), reason),
            "precision": params.get("quantizer.precision"),
            "config_hash": t.get("qexp.config_hash"),
            "record_id": t.get("qexp.record_id"),
            "experiment": experiment,
            "sweep_id": None,  # below: one row per sweep the job is in
            "job_dir": t.get("qexp.job_dir"),
            "resumed_from": t.get("qexp.resumed_from"),
            "started_at": started.isoformat(),
            "sweep_started": None,
            "run_name": run.info.run_name,
            "run_id": run.info.run_id,
            "artifacts": {},
            "record_dir": _local_dir(run.info.artifact_uri),
            "tracking_uri": uri,
            "params": {k: v for k, v in params.items() if "." in k},
            **run.data.metrics,
        }
        rec = _record_of(row)
        row["artifacts"] = dict(rec.get("artifacts") or {})
        row[RECIPE] = recipe_of(rec.get("overrides") or [])
        own = t.get("qexp.sweep_id") or None  # None: a single job, outside any sweep
        in_sweeps = [own, *(s for s in sweeps_of(t) if s != own)]
        for sweep_id in in_sweeps:  # a row in each sweep that has the job
            sweep_start = sweeps.get(sweep_id)
            when = pd.Timestamp(sweep_start, unit="ms", tz="UTC") if sweep_start else started
            rows.append({**row, "sweep_id": sweep_id, "sweep_started": when.isoformat()})
    return _select(pd.DataFrame(rows), sweep, latest_sweep)


def _equivalent(tag: str | None, status: str | None, reason: str | None) -> Equivalent | None:
    """The run's ``equivalent_to`` (a JSON tag; runs logged before it: from the reason)."""
    if status != SKIPPED:
        return None
    if tag:
        try:
            d = json.loads(tag)
            return Equivalent(d["job_dir"], d["status"], tuple(d.get("unread") or ()))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable equivalent_to tag %r", tag)
    return equivalent_from_reason(reason)


def _local_dir(artifact_uri: str | None) -> str | None:
    """The run's artifact dir when it is on this machine (a ``file:`` URI), else None."""
    if not artifact_uri:
        return None
    u = urlparse(artifact_uri)
    if u.scheme in ("", "file") and Path(unquote(u.path)).is_dir():
        return unquote(u.path)
    return None


def _record_of(row: dict) -> dict:
    """The run's result.json (its artifact map, its overrides), wherever this machine can
    read it; {} when it cannot."""
    p = artifact_path(pd.Series(row), RECORD_FILE)
    try:
        rec = json.loads(p.read_text()) if p else {}
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def recipe_of(overrides: list[str]) -> str | None:
    """The ``recipe=NAME`` a job was launched with (a frontier sweep's row), else None."""
    for o in overrides:
        key, sep, value = str(o).lstrip("+").partition("=")
        if sep and key == RECIPE and value not in ("", "null"):
            return value
    return None


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
    return [c for c in df.columns if c not in AXES and c != RECIPE and c not in BOOKKEEPING]


def artifact_path(row: pd.Series, name: str) -> Path | None:
    """A job's file on this machine: a record artifact by name (``layers``), else a file of
    the job dir by its name (``layers.json``, ``result.json``, ``config.yaml``). Looked up in
    the job dir (a resumed job's: the one it was measured in), then beside the record that was
    read (or in the MLflow run's local artifact dir: ``qexp ingest`` copies them there), then
    downloaded from the run's artifact store."""
    arts = row.get("artifacts") or {}
    rel = arts.get(name) if isinstance(arts, dict) else None
    wanted = []
    if rel and Path(rel).is_absolute():
        # the sink logs those at the root of the run (earlier qexp versions: under artifacts/)
        wanted += [rel, Path(rel).name, f"artifacts/{Path(rel).name}"]
    elif rel:
        wanted += [rel, Path(rel).name]  # a job dir, or its files copied flat
    wanted.append(name)
    # a resumed job's files are in the job dir that measured it
    bases = [Path(str(row[k])) for k in ("job_dir", "resumed_from", "record_dir") if _has(row, k)]
    for base in bases:
        for w in wanted:
            c = Path(w) if Path(w).is_absolute() else base / w
            if c.is_file():
                return c
    if _has(row, "tracking_uri") and _has(row, "run_id"):
        for w in wanted:
            if not Path(w).is_absolute():
                got = _download(str(row["tracking_uri"]), str(row["run_id"]), w)
                if got is not None:
                    return got
    return None


def _has(row: pd.Series, key: str) -> bool:
    v = row.get(key)
    return isinstance(v, str) and bool(v)


@functools.lru_cache(maxsize=4096)
def _download(uri: str, run_id: str, path: str) -> Path | None:
    """One artifact of a run whose store is not on this machine (an ``mlflow server``),
    downloaded once per process into a temp dir; None when the run has no such file."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        folder = str(Path(path).parent).strip(".")
        if path not in {f.path for f in client.list_artifacts(run_id, folder)}:
            return None
        dst = tempfile.mkdtemp(prefix="qexp-artifacts-")
        return Path(client.download_artifacts(run_id, path, dst))
    except (MlflowException, OSError) as e:
        log.warning("cannot download artifact %s of run %s: %s", path, run_id, e)
        return None
