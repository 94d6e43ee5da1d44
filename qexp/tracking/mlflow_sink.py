"""Log result records to MLflow: one parent run per sweep, one child run per job.

Everything goes through an explicit ``MlflowClient`` (never the process-global active run), so
parallel jobs and threads cannot log into each other's runs. Logging is idempotent: one job is
one run per experiment, keyed by its record id (a SKIPPED job, which gets a new record each
time, by its config hash and choices), so ``qexp ingest`` can be repeated safely. A job that a
later sweep resumed (the same record, measured earlier) or skipped again stays that one run,
its artifacts logged once: the run is tagged as in that sweep too (``qexp.also_in.*``, read by
:func:`sweeps_of`), and the sweep gets its parent run. Runs carry the job's own start and end
times, so the UI's durations are the jobs' real ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
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
TAG_JOB_KEY = "qexp.job_key"  # config hash + choices: a SKIPPED job's identity across sweeps
TAG_ALSO_IN = "qexp.also_in."  # + a short hash of a later sweep's id -> that sweep's id
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


def job_key(record: Record) -> str:
    """The job a record is of, whichever sweep ran it: its config hash and choices."""
    text = json.dumps([record.config_hash, record.choices], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sweeps_of(tags: dict[str, str]) -> list[str]:
    """The sweeps a job run is in: the one that logged it, then those that reused it."""
    own = [tags[TAG_SWEEP]] if tags.get(TAG_SWEEP) else []
    return own + sorted(v for k, v in tags.items() if k.startswith(TAG_ALSO_IN) and v not in own)


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
        """A file lock beside the sqlite store, else (a server) under ``$QEXP_HOME``."""
        base = (
            where
            or self.lock_dir
            or (
                Path(self.uri[len("sqlite:///") :]).parent
                if self.uri.startswith("sqlite:///")
                else Path(os.environ.get("QEXP_HOME") or Path.home() / ".cache" / "qexp")
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

    def find_job(self, exp_id: str, record: Record):
        """The run this record's job already has in the experiment, or None: the run of the
        same record (a resumed job), else, for a SKIPPED job, the SKIPPED run of the same
        config hash and choices (the first, should an older qexp have logged several)."""
        filters = [f"tags.`{TAG_RECORD}` = '{record.record_id}'"]
        if record.status == SKIPPED and record.config_hash:
            key = job_key(record)
            filters.append(f"tags.`{TAG_JOB_KEY}` = '{key}' AND tags.`{TAG_STATUS}` = '{SKIPPED}'")
        for flt in filters:
            runs = self.client.search_runs(
                [exp_id], filter_string=flt, max_results=1, order_by=["attributes.start_time ASC"]
            )
            if runs:
                return runs[0]
        return None

    def find_logged(self, exp_id: str, record: Record) -> str | None:
        """The run of ``record``'s job in this experiment if it is filed under the record's
        sweep (or the record is of no sweep), else None."""
        run = self.find_job(exp_id, record)
        if run is None or (record.sweep_id and record.sweep_id not in sweeps_of(run.data.tags)):
            return None
        return run.info.run_id

    def _also_in(self, exp_id: str, run, record: Record, job_dir: Path | None) -> str:
        """File the job's existing run under the record's sweep too (once); its run id."""
        rid, sweep_id = run.info.run_id, record.sweep_id
        if not sweep_id or sweep_id in sweeps_of(run.data.tags):
            return rid
        when = filed_ms(record, job_dir)
        parent = self.parent_run(
            exp_id, sweep_id, f"{record.experiment} {Path(sweep_id).name}", when
        )
        digest = hashlib.sha256(sweep_id.encode()).hexdigest()[:12]
        self.client.set_tag(rid, TAG_ALSO_IN + digest, sweep_id)
        note = run.data.tags.get(NOTE_TAG, "")
        line = f"Also in sweep `{Path(sweep_id).name}`: reused there, not run again."
        self.client.set_tag(rid, NOTE_TAG, f"{note}\n\n{line}" if note else line)
        self._extend_parent(parent, when)
        return rid

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
        existing = self.find_job(exp_id, record)
        if existing is not None:  # one run per job: a later sweep that reused it is tagged
            return self._also_in(exp_id, existing, record, job_dir)
        start_ms, end_ms = job_times_ms(record)
        tags = {
            TAG_RECORD: record.record_id,
            TAG_HASH: record.config_hash,
            TAG_JOB_KEY: job_key(record),
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
            tags["mlflow.parentRunId"] = self.parent_run(
                exp_id, record.sweep_id, sweep_name, filed_ms(record, job_dir)
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
        """The record, the config and the job's artifacts, at the root of the run's artifacts
        (the job's ``artifacts/`` folder is not nested again in MLflow's own ``artifacts``)."""
        for name in (RECORD_FILE, "config.yaml"):
            if (job_dir / name).exists():
                self.client.log_artifact(rid, str(job_dir / name))
        for name, rel in record.artifacts.items():
            p = artifact_file(record, rel, job_dir)
            if p is None:
                log.warning("artifact %s (%s in %s) is missing; not logged", name, rel, job_dir)
            elif p.is_dir():
                self.client.log_artifacts(rid, str(p), artifact_path=name)
            else:
                self.client.log_artifact(rid, str(p), artifact_path=artifact_folder(rel))


def artifact_file(record: Record, rel: str, job_dir: Path) -> Path | None:
    """A record's artifact on this machine: an absolute path, else a path relative to the job
    dir that made it (a resumed record's ``resumed_from``: the new job dir has none of its
    files), else to ``job_dir``; None when it is in none of them."""
    if Path(rel).is_absolute():
        return Path(rel) if Path(rel).exists() else None
    bases = [Path(record.resumed_from)] if record.resumed_from else []
    for base in [*bases, Path(job_dir)]:
        if (base / rel).exists():
            return base / rel
    return None


def artifact_folder(rel: str) -> str | None:
    """The folder a job file goes to in its run: its folder in the job dir less the job's
    ``artifacts/`` (MLflow's run folder is named that already); the root for a file outside."""
    if Path(rel).is_absolute():
        return None
    parts = Path(rel).parent.parts
    if parts and parts[0] == "artifacts":
        parts = parts[1:]
    return "/".join(parts) or None


def _now_ms() -> int:
    return int(time.time() * 1000)


def filed_ms(record: Record, job_dir: Path | None) -> int:
    """When the record's sweep took it, in ms: a sweep starts with its first job, and a job it
    resumed was taken when its record was written into the sweep (that file's time; now,
    without one), not when it was measured."""
    if not record.resumed_from:
        return job_times_ms(record)[0]
    with contextlib.suppress(OSError, TypeError):
        return int((Path(job_dir) / RECORD_FILE).stat().st_mtime * 1000)  # type: ignore[arg-type]
    return _now_ms()


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
