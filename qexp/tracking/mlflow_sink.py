"""Log result records to MLflow: one parent run per sweep, one child run per job.

Everything goes through an explicit ``MlflowClient`` (never the process-global active run), so
parallel jobs and threads cannot log into each other's runs. Logging is idempotent: a run is
keyed by (experiment, sweep, record_id), so ``qexp ingest`` can be repeated safely, and a job a
sweep resumed (the same record, measured earlier) appears in that sweep as well. Runs carry the
job's own start and end times, so the UI's durations are the jobs' real ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from qexp.cache import file_lock
from qexp.config.axes import AXES, NEUTRAL
from qexp.record import FAILED, FINISHED, RECORD_FILE, SKIPPED, Record, first_line
from qexp.registry import TRACKERS
from qexp.tracking.mlflow_view import (
    AXIS_ORDER,
    NOTE_TAG,
    ensure_view,
    experiment_tags,
    hide_empty_default,
)

log = logging.getLogger("qexp")

TAG_RECORD = "qexp.record_id"
TAG_HASH = "qexp.config_hash"
TAG_SWEEP = "qexp.sweep_id"
TAG_STATUS = "qexp.status"
TAG_KIND = "qexp.kind"  # "job" or "sweep"
TAG_SWEEP_NAME = "qexp.sweep"  # the sweep dir's name: a short column in the UI
TAG_REASON = "qexp.reason"
TAG_EQUIVALENT = "qexp.equivalent_to"  # JSON of Record.equivalent_to
TAG_RESUMED = "qexp.resumed_from"
# MLflow's own run status. A SKIPPED job ended as designed (an invalid or repeated combination);
# MLflow's KILLED shows as a red "Killed", a crash, so it is FINISHED there and the
# qexp.status column (the first of the qexp view) says SKIPPED.
_MLFLOW_STATUS = {FINISHED: "FINISHED", FAILED: "FAILED", SKIPPED: "FINISHED"}


def default_uri(output_dir: str | os.PathLike[str] = "outputs") -> str:
    return f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def _prepare_uri(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return uri


def run_name(record: Record) -> str:
    """Short and readable in the MLflow UI: the choices that matter for this job, those a
    sweep varies most first (the UI cuts a long name at the column's edge)."""
    parts = []
    for axis in AXIS_ORDER:
        choice = record.choices.get(axis)
        # the canonical config holds a bare {"name": neutral} only for an axis the quantizer
        # does not read: hide those, keep e.g. observer=minmax of a PTQ job
        unread = record.config.get(axis) == {"name": NEUTRAL.get(axis)}
        # "none" says something only as the quantizer (fp32); ignore=none is the default
        if choice and not unread and (choice != "none" or axis == "quantizer"):
            parts.append(str(choice))
    return " ".join(parts) or record.job_name or record.record_id[:8]


class MlflowSink:
    """Write records into one tracking URI (sqlite file or ``mlflow server``)."""

    def __init__(self, uri: str, lock_dir: Path | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = _prepare_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        # experiment/parent creation is serialised with a file lock: parallel jobs of one
        # sweep on one machine (or a shared filesystem) must not create two parents
        self.lock_dir = lock_dir
        self._viewed: set[str] = set()  # experiments checked for the qexp view this process

    def _lock(self, name: str, where: Path | None = None):
        base = (
            where
            or self.lock_dir
            or (
                Path(self.uri[len("sqlite:///") :]).parent
                if self.uri.startswith("sqlite:///")
                else Path.home() / ".cache" / "qexp"
            )
        )
        return file_lock(Path(base) / f".qexp-{name}.lock")

    def _artifact_location(self, name: str) -> str | None:
        """Artifacts beside a sqlite store (not ./mlruns of whatever the cwd is); a server
        keeps its own artifact root."""
        if not self.uri.startswith("sqlite:///"):
            return None
        db = Path(self.uri[len("sqlite:///") :]).resolve()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return (db.parent / "mlartifacts" / safe).as_uri()

    def experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.experiment_id not in self._viewed:
                ensure_view(self.client, exp)
                self._viewed.add(exp.experiment_id)
            return exp.experiment_id
        with self._lock("experiment"):
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            try:
                exp_id = self.client.create_experiment(
                    name,
                    artifact_location=self._artifact_location(name),
                    tags=experiment_tags(name),
                )
                self._viewed.add(exp_id)
                if self.uri.startswith("sqlite:///"):  # a store of qexp's own
                    hide_empty_default(self.client)
                return exp_id
            except MlflowException as e:
                # jobs on other machines do not share our file lock; the tracking store's
                # unique name is the real arbiter: whoever lost the race uses the winner's
                exp = self.client.get_experiment_by_name(name)
                if exp is None or e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                return exp.experiment_id

    def find_run(self, exp_id: str, tag: str, value: str) -> str | None:
        runs = self.client.search_runs(
            [exp_id],
            filter_string=f"tags.`{tag}` = '{value}'",
            max_results=1,
            order_by=["attributes.start_time ASC"],  # the first one, should there be two
        )
        return runs[0].info.run_id if runs else None

    def find_logged(self, exp_id: str, record: Record) -> str | None:
        """The run of ``record`` in this experiment and in the record's sweep, if logged."""
        runs = self.client.search_runs(
            [exp_id],
            filter_string=f"tags.`{TAG_RECORD}` = '{record.record_id}'",
            max_results=1000,
        )
        for run in runs:
            if run.data.tags.get(TAG_SWEEP) == (record.sweep_id or None):
                return run.info.run_id
        return None

    def parent_run(
        self, exp_id: str, sweep_id: str, sweep_name: str, start_ms: int | None = None
    ) -> str:
        found = self.find_run(exp_id, TAG_SWEEP + ".parent", sweep_id)
        if found:
            return found
        # the sweep dir is shared by every job of the sweep (Slurm needs a shared filesystem),
        # so a lock there serialises parent creation across machines, not only on this one
        sweep_dir = Path(sweep_id)
        with self._lock("parent", sweep_dir if sweep_dir.is_dir() else None):
            found = self.find_run(exp_id, TAG_SWEEP + ".parent", sweep_id)
            if found:
                return found
            run = self.client.create_run(
                exp_id,
                run_name=sweep_name,
                start_time=start_ms,
                tags={
                    TAG_SWEEP + ".parent": sweep_id,
                    TAG_KIND: "sweep",
                    TAG_SWEEP: sweep_id,
                    TAG_SWEEP_NAME: Path(sweep_id).name,
                },
            )
            return run.info.run_id

    def log(self, record: Record, job_dir: Path | None = None) -> str:
        """Log one record (and its artifacts); returns the run id. Idempotent."""
        from mlflow.entities import Metric, Param, RunTag

        exp_id = self.experiment_id(record.experiment)
        existing = self.find_logged(exp_id, record)
        if existing:
            return existing
        start_ms, end_ms = job_times_ms(record)
        tags = {
            TAG_RECORD: record.record_id,
            TAG_HASH: record.config_hash,
            TAG_STATUS: record.status,
            TAG_KIND: "job",
            "qexp.git_sha": record.git_sha or "",
            "qexp.job_dir": record.job_dir,
        }
        why = record.reason or first_line(record.error)
        if why:
            tags[TAG_REASON] = why[:4000]
        if record.equivalent_to is not None:
            tags[TAG_EQUIVALENT] = json.dumps(dataclasses.asdict(record.equivalent_to))
        if record.error:
            tags["qexp.error"] = record.error[-4000:]
        if record.resumed_from:
            tags[TAG_RESUMED] = record.resumed_from
        note = _run_note(record)
        if note:
            tags[NOTE_TAG] = note
        if record.sweep_id:
            tags[TAG_SWEEP] = record.sweep_id
            tags[TAG_SWEEP_NAME] = Path(record.sweep_id).name
            sweep_name = f"{record.experiment} {Path(record.sweep_id).name}"
            # a sweep starts with its first job; one whose first job was resumed starts now
            sweep_start = _now_ms() if record.resumed_from else start_ms
            tags["mlflow.parentRunId"] = self.parent_run(
                exp_id, record.sweep_id, sweep_name, sweep_start
            )
        run = self.client.create_run(
            exp_id, run_name=run_name(record), start_time=start_ms, tags=tags
        )
        rid = run.info.run_id
        params = [Param(axis, str(record.choices.get(axis))) for axis in AXES]
        params += [Param(k, _short(v)) for k, v in flat_params(record.config).items()]
        metrics = [Metric(k, float(v), end_ms, 0) for k, v in sorted(record.metrics.items())]
        for i in range(0, max(len(params), len(metrics), 1), 100):  # mlflow batch limits
            self.client.log_batch(
                rid,
                metrics=metrics[i : i + 100],
                params=_dedup(params[i : i + 100]),
                tags=[RunTag("qexp.versions", str(record.versions))] if i == 0 else [],
            )
        if job_dir is not None:
            self._log_artifacts(rid, Path(job_dir), record)
        self.client.set_terminated(
            rid, status=_MLFLOW_STATUS.get(record.status, "FAILED"), end_time=end_ms
        )
        if record.sweep_id:
            self._extend_parent(tags["mlflow.parentRunId"], end_ms)
        return rid

    def _extend_parent(self, parent: str, end_ms: int) -> None:
        """The sweep's run ends with its last job (a parallel writer may race this: the
        later end wins on the next job)."""
        info = self.client.get_run(parent).info
        if info.status != "FINISHED" or (info.end_time or 0) < end_ms:
            self.client.set_terminated(
                parent, status="FINISHED", end_time=max(end_ms, info.end_time or 0)
            )

    def _log_artifacts(self, rid: str, job_dir: Path, record: Record) -> None:
        for name in (RECORD_FILE, "config.yaml"):
            if (job_dir / name).exists():
                self.client.log_artifact(rid, str(job_dir / name))
        for name, rel in record.artifacts.items():
            p = Path(rel) if Path(rel).is_absolute() else job_dir / rel
            if not p.exists():
                log.warning("artifact %s (%s) is missing; not logged", name, p)
            elif p.is_dir():
                self.client.log_artifacts(rid, str(p), artifact_path=name)
            else:
                sub = str(Path(rel).parent) if not Path(rel).is_absolute() else "artifacts"
                self.client.log_artifact(rid, str(p), artifact_path=None if sub == "." else sub)


def _now_ms() -> int:
    return int(time.time() * 1000)


def job_times_ms(record: Record) -> tuple[int, int]:
    """(start, end) of the job in ms since the epoch, from the record: the UI's duration is
    the job's, not the few milliseconds logging took. A record without times gets now."""
    try:
        start = int(datetime.fromisoformat(record.started_at).timestamp() * 1000)
    except (TypeError, ValueError):
        return _now_ms(), _now_ms()
    end = start + int(round(record.duration_s * 1000))
    if not record.duration_s and record.finished_at:
        with contextlib.suppress(ValueError):
            end = int(datetime.fromisoformat(record.finished_at).timestamp() * 1000)
    return start, max(start, end)


def _run_note(record: Record) -> str:
    """The run's description in the UI: why it was skipped or failed, where it was measured."""
    lines = []
    if record.status == SKIPPED:
        lines.append(f"**SKIPPED** (not run): {record.reason or ''}")
    elif record.status == FAILED:
        lines.append(f"**FAILED**: {first_line(record.error)}")
    if record.resumed_from:
        lines.append(f"Resumed: measured earlier in `{record.resumed_from}`, not run again.")
    return "\n\n".join(lines)


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 500 else s[:497] + "..."


def flat_params(cfg: dict[str, Any]) -> dict[str, Any]:
    """The swept settings as dotted params (model.imgsz, quantizer.w_bits, ...)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = node

    for axis in AXES:
        if axis in cfg:
            walk(axis, cfg[axis])
    return {k: v for k, v in out.items() if not k.endswith(".name")}


def _dedup(params: list) -> list:
    seen: set[str] = set()
    out = []
    for p in params:
        if p.key not in seen:
            seen.add(p.key)
            out.append(p)
    return out


@TRACKERS.register("mlflow")
def mlflow_sink(cfg) -> MlflowSink:
    uri = cfg.tracking.uri or default_uri(cfg.paths.output_dir)
    return MlflowSink(uri)


@TRACKERS.register("none")
def no_sink(cfg) -> None:
    return None
