"""One job, top to bottom: validate, skip or resume, quantize, measure, record, track.

Whatever happens inside a job, the runner leaves a result record in the job dir: FINISHED with
metrics, SKIPPED with the reason, or FAILED with the error. It never raises into the sweep
(except to pass on Ctrl-C after recording it), so one bad job cannot end a sweep.
"""

from __future__ import annotations

import fcntl
import logging
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from qexp.assets import check as check_assets
from qexp.assets import portable
from qexp.cache import release_all
from qexp.config.axes import AXES, NEUTRAL, effective_choices
from qexp.config.settings import Settings, drop_added_defaults
from qexp.config.validate import ConfigError, validate
from qexp.environment import git_sha, versions
from qexp.interfaces import Backend, Quantizer
from qexp.job import Job, content_hash
from qexp.plugins import load_plugins
from qexp.record import (
    FAILED,
    FINISHED,
    RUNNING,
    SKIPPED,
    Equivalent,
    Record,
    atomic_write_text,
    read_record,
)
from qexp.registry import BACKENDS, QUANTIZERS, TRACKERS
from qexp.summary import headline
from qexp.threads import job_threads, torch_threads

log = logging.getLogger("qexp")

# Keys that do not change what a job measures (where it logs, where files go).
_NOT_HASHED = ("tracking", "paths", "resume", "log_level", "experiment_name", "paper")


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C inside a job, after its record was written (FAILED, "interrupted"): the CLI
    says what was interrupted and how to resume, from ``record``."""

    def __init__(self, record: Record) -> None:
        super().__init__(f"interrupted: {record.job_dir}")
        self.record = record


@dataclass(frozen=True)
class JobSpec:
    """Where a job runs and how it was asked for (from Hydra, or built by tests/launchers)."""

    job_dir: Path
    choices: dict[str, str]
    overrides: tuple[str, ...] = ()
    sweep_id: str | None = None
    job_name: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def consumed_axes(cfg: DictConfig) -> frozenset[str]:
    quantizer = QUANTIZERS.get(cfg.quantizer.name)
    return frozenset(getattr(quantizer, "consumes", frozenset()))


def canonical(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config with unread axes set to neutral and bookkeeping keys removed."""
    d = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(d, dict)
    for key in _NOT_HASHED:
        d.pop(key, None)
    consumed = consumed_axes(cfg)
    for axis, neutral in NEUTRAL.items():
        if axis not in consumed:
            d[axis] = {"name": neutral}
    # options added since, at their default: the hash these jobs had before
    return {
        str(k): drop_added_defaults(str(k), v) if isinstance(v, dict) else v for k, v in d.items()
    }


def config_hash(cfg: DictConfig) -> str:
    # the same job hashes the same wherever the assets (and the clone) live
    return content_hash(portable(canonical(cfg), str(cfg.paths.assets)))


def plugins_of(s: Settings) -> tuple[Quantizer, Backend]:
    """The job's quantizer and backend, each constructed with its typed config."""
    return QUANTIZERS.build(s.quantizer), BACKENDS.build(s.backend)


def combination_reason(s: Settings) -> str | None:
    """Why this combination cannot run, or None: the quantizer cannot make what the config asks
    of it (its ``produces``) or refuses the other axes (``check``), the backend does not take
    what it makes (its ``accepts``) or cannot run it here (``check``: a library missing).
    Checked once, before anything loads."""
    quantizer, backend = plugins_of(s)
    q, b = s.quantizer, s.backend
    out = quantizer.output()
    if out not in quantizer.produces:
        makes = ", ".join(sorted(map(str, quantizer.produces)))
        return (
            f"quantizer={q.name} makes {makes}; quantizer.precision={q.precision} "
            f"quantizer.export={q.export} asks it for {out}"
        )
    reason = quantizer.check(s)
    if reason:
        return reason
    refusal = backend.accepts.refusal(out)
    if refusal:
        return f"quantizer={q.name} makes {out}; backend={b.name} runs {refusal}"
    return backend.check(s, out)


class Index:
    """config hash -> job dir of a FINISHED record (resume and equivalence)."""

    def __init__(self, output_dir: Path) -> None:
        self.dir = Path(output_dir) / "index"
        self._held: dict[str, Any] = {}

    def lookup(self, chash: str) -> Record | None:
        p = self.dir / f"{chash}.txt"
        if not p.exists():
            return None
        try:
            rec = read_record(Path(p.read_text().strip()))
        except ValueError as e:
            log.warning("index entry %s points to an unreadable record (%s); re-running", p, e)
            return None
        return rec if rec.status == FINISHED and rec.config_hash == chash else None

    def add(self, record: Record) -> None:
        atomic_write_text(self.dir / f"{record.config_hash}.txt", record.job_dir)

    def claim(self, chash: str, job_dir: Path) -> Path | None:
        """Mark ``chash`` as running here (an flock held until ``release``); None when another
        process runs it now (parallel launchers start equivalent jobs at the same time)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        f = open(self.dir / f"{chash}.run.lock", "a+")  # noqa: SIM115 - held while running
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            return Path(holder or "?")
        f.seek(0)
        f.truncate()
        f.write(str(job_dir))
        f.flush()
        self._held[chash] = f
        return None

    def release(self, chash: str) -> None:
        f = self._held.pop(chash, None)
        if f is not None:
            f.close()


def run_job(cfg: DictConfig, spec: JobSpec) -> Record:
    """Run one job and return its record (also written to ``spec.job_dir/result.json``)."""
    # launchers (submitit, joblib, Ray) run jobs in fresh worker processes that never ran the
    # CLI's setup: fill the registries here, or every job there fails as an unknown plugin
    load_plugins()
    job_dir = Path(spec.job_dir).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base = Record(
        record_id=uuid.uuid4().hex,
        status=RUNNING,
        experiment=str(cfg.experiment_name),
        config_hash="",
        choices=effective_choices(
            {a: str(spec.choices.get(a, OmegaConf.select(cfg, f"{a}.name"))) for a in AXES},
            spec.overrides,
        ),
        overrides=list(spec.overrides),
        sweep_id=spec.sweep_id,
        job_name=spec.job_name or job_dir.name,
        job_dir=str(job_dir),
        git_sha=git_sha(),
        versions=versions(),
        started_at=_now(),
    )
    try:
        config_text = OmegaConf.to_yaml(cfg, resolve=True)
    except Exception as e:  # an interpolation that cannot resolve names itself here
        return _finish(cfg, base.replace(status=FAILED, error=f"config: {e}"), job_dir, t0)
    atomic_write_text(job_dir / "config.yaml", config_text)
    try:
        settings = validate(cfg)
        base = base.replace(config_hash=config_hash(cfg), config=canonical(cfg))
    except (ConfigError, KeyError) as e:
        return _finish(cfg, base.replace(status=FAILED, error=f"bad config: {e}"), job_dir, t0)

    reason = combination_reason(settings)
    if reason:
        return _finish(cfg, base.replace(status=SKIPPED, reason=reason), job_dir, t0)

    index = Index(Path(cfg.paths.output_dir))
    running = index.claim(base.config_hash, job_dir)
    if running is not None:
        why = (
            f"equivalent to the job running now in {running} (same config hash); "
            "re-run the sweep to resume it if that one fails"
        )
        twin = Equivalent(str(running), RUNNING)
        return _finish(
            cfg, base.replace(status=SKIPPED, reason=why, equivalent_to=twin), job_dir, t0
        )
    try:
        return _claimed(cfg, spec, base, index, job_dir, t0)
    finally:
        index.release(base.config_hash)


def _claimed(
    cfg: DictConfig, spec: JobSpec, base: Record, index: Index, job_dir: Path, t0: float
) -> Record:
    """The rest of run_job, with this job's config hash claimed."""
    done = index.lookup(base.config_hash)
    if done is not None:
        if done.choices == base.choices and cfg.resume:
            log.info(
                "already FINISHED in %s; reusing its record (%s)",
                done.job_dir,
                headline(done.metrics) or "no metrics",
            )
            # the measurement is the earlier one; where it is filed is this sweep's (its
            # experiment_name is not hashed, so a new name resumes jobs from an old one)
            resumed = done.replace(
                job_dir=str(job_dir),
                resumed_from=done.job_dir,
                sweep_id=spec.sweep_id,
                experiment=base.experiment,
                job_name=base.job_name,
                overrides=base.overrides,
            )
            resumed.write(job_dir)
            _track(cfg, resumed, job_dir)
            return resumed
        if done.choices != base.choices:
            unread = sorted(a for a in NEUTRAL if base.choices[a] != done.choices.get(a))
            why = (
                f"equivalent to the FINISHED job in {done.job_dir}: quantizer="
                f"{cfg.quantizer.name} does not use {', '.join(unread)}"
            )
            twin = Equivalent(done.job_dir, FINISHED, tuple(unread))
            return _finish(
                cfg, base.replace(status=SKIPPED, reason=why, equivalent_to=twin), job_dir, t0
            )

    base.write(job_dir)  # RUNNING: a job killed from outside leaves this behind
    job = Job(cfg=cfg, dir=job_dir, cache_dir=Path(cfg.paths.cache_dir).resolve())
    try:
        _timed_execute(job)
        record = base.replace(status=FINISHED)
    except KeyboardInterrupt:
        record = base.replace(status=FAILED, error="interrupted (KeyboardInterrupt)")
        # the CLI prints the one line about it (what, what was kept, how to resume)
        record = _finish(cfg, _with_job(record, job), job_dir, t0, quiet=True)
        raise JobInterrupted(record) from None
    except BaseException as e:  # noqa: BLE001 - a job must never take the sweep down
        tb = traceback.format_exc(limit=20)
        log.error("job failed: %s: %s", type(e).__name__, e)
        record = base.replace(status=FAILED, error=f"{type(e).__name__}: {e}\n{tb[-6000:]}")
        if isinstance(e, SystemExit | MemoryError):
            _finish(cfg, _with_job(record, job), job_dir, t0)
            raise
    record = _with_job(record, job)
    record = _finish(cfg, record, job_dir, t0)
    if record.status == FINISHED:
        index.add(record)
    return record


def _with_job(record: Record, job: Job) -> Record:
    return record.replace(metrics=dict(job.metrics), artifacts=dict(job.artifacts), info=job.info)


def _timed_execute(job: Job) -> None:
    """Run the job's work, recording its wall time as ``info.work_s``: what qexp spends around
    it (validation, hashing, records, tracking) is overhead, reported by scripts/load_test.py."""
    t = time.perf_counter()
    threads = job_threads(job.settings.backend.threads)
    job.info.update(threads.info())
    try:
        with torch_threads(threads.n):  # this job's share of the cores (qexp/threads.py)
            _execute(job)
    finally:
        job.info["work_s"] = round(time.perf_counter() - t, 4)
        for entry in release_all():  # a build that raised: let the other jobs rebuild it
            log.warning("cache entry %s was left unbuilt by this job", entry)


def _execute(job: Job) -> None:
    """The data flow of docs/architecture.md: model + data -> quantize -> backend measures."""
    from qexp.data import load_eval_data
    from qexp.registry import MODEL_FAMILIES

    s = job.settings
    check_assets(job.cfg)
    log.info("loading model %s (%s) from %s", s.model.name, s.model.family, s.model.weights)
    detector = MODEL_FAMILIES.get(s.model.family)(s.model, job)
    data = load_eval_data(s.data, job)
    quantizer, backend = plugins_of(s)
    t = time.perf_counter()
    deploy = quantizer.quantize(job, detector, data)
    job.metrics.setdefault("quantize_s", time.perf_counter() - t)
    if deploy.output != quantizer.output():  # a plugin bug: the backend would get the wrong files
        raise RuntimeError(
            f"quantizer={s.quantizer.name} promised {quantizer.output()} but made {deploy.output}"
        )
    job.info.update(deploy.info)
    job.info.setdefault("route", deploy.route)
    job.info.setdefault("precision", deploy.precision)
    backend.run(job, deploy, data)


def _finish(
    cfg: DictConfig, record: Record, job_dir: Path, t0: float, quiet: bool = False
) -> Record:
    record = record.replace(finished_at=_now(), duration_s=round(time.perf_counter() - t0, 3))
    try:
        record.write(job_dir)
    except OSError as e:
        # disk full / quota: the previous record stays whole (atomic write) and the sweep goes
        # on; the job is not indexed, so re-running the sweep re-runs it
        log.exception("cannot write the record in %s; re-run the sweep to resume this job", job_dir)
        record = record.replace(
            status=FAILED, error=f"record not written: {e}\n{record.error or ''}"
        )
    if not quiet:
        log.info("%s", status_line(record))
    _track(cfg, record, job_dir, quiet)
    return record


def status_line(record: Record) -> str:
    """``FINISHED model=... backend=...: mAP50-95 0.4049, ...`` or the reason / error."""
    choices = " ".join(f"{k}={v}" for k, v in record.choices.items())
    if record.status == FINISHED:
        metrics = headline(record.metrics)
        return f"{record.status} {choices}" + (f": {metrics}" if metrics else "")
    why = (record.reason or record.error or "").strip()
    return f"{record.status} {choices}" + (f" ({why.splitlines()[0]})" if why else "")


def _track(cfg: DictConfig, record: Record, job_dir: Path, quiet: bool = False) -> None:
    """Send the record to the tracking sink; on failure it stays on disk for `qexp ingest`."""
    try:
        sink = TRACKERS.get(cfg.tracking.name)(cfg)
        if sink is not None:
            if not quiet:
                log.info("logging the record to %s", cfg.tracking.get("uri") or cfg.tracking.name)
            sink.log(record, job_dir)
    except Exception as e:  # noqa: BLE001
        log.warning(
            "tracking failed (%s: %s); the record is safe in %s — run `qexp ingest %s` later",
            type(e).__name__,
            e,
            job_dir,
            job_dir,
        )
