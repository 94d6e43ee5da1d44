"""Log result records to MLflow: one parent run per sweep, one child run per job.

Everything goes through an explicit ``MlflowClient`` (never the process-global active run), so
parallel jobs and threads cannot log into each other's runs. Logging is idempotent: a run is
keyed by (experiment, record_id), so ``qexp ingest`` can be repeated safely.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any

from qexp.config.schema import AXES
from qexp.record import FAILED, FINISHED, RECORD_FILE, SKIPPED, Record
from qexp.registry import TRACKERS

log = logging.getLogger("qexp")

TAG_RECORD = "qexp.record_id"
TAG_HASH = "qexp.config_hash"
TAG_SWEEP = "qexp.sweep_id"
TAG_STATUS = "qexp.status"
TAG_KIND = "qexp.kind"  # "job" or "sweep"
_MLFLOW_STATUS = {FINISHED: "FINISHED", FAILED: "FAILED", SKIPPED: "KILLED"}
NEUTRAL = {"observer": "minmax", "calibrator": "none", "ignore": "none"}


def default_uri(output_dir: str | os.PathLike[str] = "outputs") -> str:
    return f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def _prepare_uri(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return uri


def run_name(record: Record) -> str:
    """Short and readable in the MLflow UI: the choices that matter for this job."""
    parts = []
    for axis in AXES:
        choice = record.choices.get(axis)
        # the canonical config holds a bare {"name": neutral} only for an axis the quantizer
        # does not read: hide those, keep e.g. observer=minmax of a PTQ job
        unread = record.config.get(axis) == {"name": NEUTRAL.get(axis)}
        if choice and not unread:
            parts.append(str(choice))
    return " ".join(parts) or record.job_name or record.record_id[:8]


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class MlflowSink:
    """Write records into one tracking URI (sqlite file or ``mlflow server``)."""

    def __init__(self, uri: str, lock_dir: Path | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = _prepare_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        # experiment/parent creation is serialised with a file lock: parallel jobs of one
        # sweep on one machine (or a shared filesystem) must not create two parents
        self.lock_dir = lock_dir

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
        return _file_lock(Path(base) / f".qexp-{name}.lock")

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
            return exp.experiment_id
        with self._lock("experiment"):
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            try:
                return self.client.create_experiment(
                    name,
                    artifact_location=self._artifact_location(name),
                    # MLflow 3 opens other kinds of experiment on its GenAI pages
                    tags={"mlflow.experimentKind": "custom_model_development"},
                )
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

    def parent_run(self, exp_id: str, sweep_id: str, sweep_name: str) -> str:
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
                tags={TAG_SWEEP + ".parent": sweep_id, TAG_KIND: "sweep", TAG_SWEEP: sweep_id},
            )
            return run.info.run_id

    def log(self, record: Record, job_dir: Path | None = None) -> str:
        """Log one record (and its artifacts); returns the run id. Idempotent."""
        from mlflow.entities import Metric, Param, RunTag

        exp_id = self.experiment_id(record.experiment)
        existing = self.find_run(exp_id, TAG_RECORD, record.record_id)
        if existing:
            return existing
        tags = {
            TAG_RECORD: record.record_id,
            TAG_HASH: record.config_hash,
            TAG_STATUS: record.status,
            TAG_KIND: "job",
            "qexp.git_sha": record.git_sha or "",
            "qexp.job_dir": record.job_dir,
        }
        if record.reason:
            tags["qexp.reason"] = record.reason[:4000]
        if record.error:
            tags["qexp.error"] = record.error[-4000:]
        if record.sweep_id:
            tags[TAG_SWEEP] = record.sweep_id
            sweep_name = f"{record.experiment} {Path(record.sweep_id).name}"
            tags["mlflow.parentRunId"] = self.parent_run(exp_id, record.sweep_id, sweep_name)
        run = self.client.create_run(exp_id, run_name=run_name(record), tags=tags)
        rid = run.info.run_id
        params = [Param(axis, str(record.choices.get(axis))) for axis in AXES]
        params += [Param(k, _short(v)) for k, v in _flat_params(record.config).items()]
        ts = int(time.time() * 1000)
        metrics = [Metric(k, float(v), ts, 0) for k, v in sorted(record.metrics.items())]
        for i in range(0, max(len(params), len(metrics), 1), 100):  # mlflow batch limits
            self.client.log_batch(
                rid,
                metrics=metrics[i : i + 100],
                params=_dedup(params[i : i + 100]),
                tags=[RunTag("qexp.versions", str(record.versions))] if i == 0 else [],
            )
        if job_dir is not None:
            self._log_artifacts(rid, Path(job_dir), record)
        self.client.set_terminated(rid, status=_MLFLOW_STATUS.get(record.status, "FAILED"))
        if record.sweep_id:
            self.client.set_terminated(tags["mlflow.parentRunId"], status="FINISHED")
        return rid

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


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 500 else s[:497] + "..."


def _flat_params(cfg: dict[str, Any]) -> dict[str, Any]:
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
