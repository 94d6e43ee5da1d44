"""`qexp ingest`: log records written earlier (offline, on a GPU box, server down) to MLflow."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from qexp.record import RUNNING, find_records, read_record
from qexp.tracking.mlflow_sink import MlflowSink, default_uri

log = logging.getLogger("qexp")


@dataclass
class IngestCount:
    logged: int = 0  # new in the store, or filed under one more sweep
    present: int = 0  # already there, in this sweep
    skipped: int = 0  # readable but not loggable: a job that never finished (RUNNING)
    unreadable: int = 0  # not a record qexp can read (corrupt, truncated, foreign)


def ingest(
    dirs: Iterable[Path], uri: str | None = None, experiment: str | None = None
) -> IngestCount:
    """Log every result.json under ``dirs``; records already in MLflow (in the same experiment
    and sweep) are left alone. A job a sweep resumed is filed under that sweep too (its one
    run: :mod:`qexp.tracking.mlflow_sink`). A record that cannot be read is skipped with a
    warning and counted as unreadable."""
    sink = MlflowSink(uri or default_uri())
    count = IngestCount()
    for d in dirs:
        paths = find_records(Path(d))
        if not paths:
            log.warning("no result.json under %s", d)
        for path in paths:
            try:
                rec = read_record(path)
            except ValueError as e:
                log.warning("%s; skipped", e)
                count.unreadable += 1
                continue
            if rec.status == RUNNING:
                log.warning("%s: job never finished (killed?); re-run its sweep to resume", path)
                count.skipped += 1
                continue
            if rec.resumed_from and not experiment:
                rec = rec.replace(experiment=_experiment_of_job(path.parent, rec.experiment))
            if experiment:
                rec = rec.replace(experiment=experiment)
            exp_id = sink.experiment_id(rec.experiment)
            if sink.find_logged(exp_id, rec):
                count.present += 1
                continue
            sink.log(rec, path.parent)
            count.logged += 1
    return count


def _experiment_of_job(job_dir: Path, default: str) -> str:
    """The experiment_name the job ran under (its config.yaml): earlier qexp versions wrote a
    resumed record with the experiment of the sweep it was taken from."""
    import yaml

    try:
        cfg = yaml.safe_load((job_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return default
    name = cfg.get("experiment_name") if isinstance(cfg, dict) else None
    return str(name) if name else default
