"""What a job or a sweep says when it ends: headline metrics, counts, a one-screen summary.

The summary reads the result records a sweep wrote (the source of truth), so it works for
every launcher (jobs in worker processes, on Slurm nodes) and whether or not the report
callback could run. ``SweepOutcome`` is the Hydra callback that finds them; the CLI prints
the summary last and turns the counts into the exit code.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from qexp.record import FAILED, FINISHED, RUNNING, SKIPPED, Record, find_records, read_record

MAX_ROWS = 20  # one screen
# (metric, label, format) shown after a job's status, when the record has them
HEADLINE = (
    ("map50_95", "mAP50-95", "{:.4f}"),
    ("map50", "mAP50", "{:.4f}"),
    ("latency_ms_p50", "latency p50", "{:.1f} ms"),
)


def headline(metrics: dict[str, float]) -> str:
    """``mAP50-95 0.4049, mAP50 0.5624, latency p50 62.5 ms`` (the metrics a record has)."""
    return ", ".join(
        f"{label} {fmt.format(metrics[k])}" for k, label, fmt in HEADLINE if k in metrics
    )


def _why(rec: Record, sweep_dir: Path) -> str:
    """Why a job did not finish, whole (a terminal wraps a long line; a cut drops the cause).
    A repeat says its cause first, from the record's fields: which axes its quantizer does not
    read, then the job it repeats (one of this sweep by its number)."""
    eq = rec.equivalent_to
    if rec.status == SKIPPED and eq is not None:
        twin = Path(eq.job_dir)
        here = twin.parent == Path(sweep_dir).resolve()
        where = f"job {twin.name} of this sweep" if here else str(twin)
        if eq.status == FINISHED and eq.unread:
            quantizer = rec.choices.get("quantizer")
            return (
                f"quantizer={quantizer} does not use {', '.join(eq.unread)}: "
                f"the same job as {where} (FINISHED)"
            )
        return f"the same job (config hash) as {where}, {eq.status} when this one was decided"
    text = (rec.reason or rec.error or "").strip()
    return text.splitlines()[0] if text else ""


@dataclass
class SweepSummary:
    sweep_dir: Path
    records: list[Record] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.status for r in self.records)

    @property
    def ok(self) -> bool:
        """No job FAILED (or was left RUNNING by a crash); SKIPPED is fine."""
        return all(r.status in (FINISHED, SKIPPED) for r in self.records)

    def count_line(self) -> str:
        c = self.counts
        parts = [f"{c.get(s, 0)} {s}" for s in (FINISHED, FAILED, SKIPPED)]
        if c.get(RUNNING):
            parts.append(f"{c[RUNNING]} left RUNNING (killed)")
        return f"{len(self.records)} jobs: " + ", ".join(parts)

    def labels(self) -> list[str]:
        """Each job named by the overrides that vary across the sweep (else its job name)."""
        sets = [dict(o.split("=", 1) for o in r.overrides if "=" in o) for r in self.records]
        keys = sorted({k for s in sets for k in s})
        varying = [k for k in keys if len({s.get(k) for s in sets}) > 1]
        return [
            " ".join(f"{k}={s.get(k, '-')}" for k in varying) or r.job_name
            for r, s in zip(self.records, sets, strict=True)
        ]

    def render(self) -> str:
        lines = [f"sweep done: {self.count_line()}  ({self.sweep_dir})"]
        labels = self.labels()
        width = min(max((len(x) for x in labels), default=0), 60)  # a longer one pushes right
        for rec, label in list(zip(self.records, labels, strict=True))[:MAX_ROWS]:
            detail = headline(rec.metrics) if rec.status == FINISHED else _why(rec, self.sweep_dir)
            if rec.resumed_from:
                detail += " (reused)"
            lines.append(f"  {rec.status:<8}  {label:<{width}}  {detail}".rstrip())
        if len(self.records) > MAX_ROWS:
            lines.append(f"  ... and {len(self.records) - MAX_ROWS} more")
        if self.records and all(r.status == SKIPPED for r in self.records):
            lines.append("nothing was measured: every job was SKIPPED (as designed; exit code 0)")
        lines.append(f"table: qexp report --records {self.sweep_dir}")
        return "\n".join(lines)


def collect(sweep_dir: Path, since: float = 0.0) -> SweepSummary:
    """The records under ``sweep_dir`` written at or after ``since`` (epoch seconds), by job
    number: an earlier run into the same sweep dir leaves records this one did not write."""
    found: list[tuple[Any, Record]] = []
    for path in find_records(sweep_dir):
        try:
            if path.stat().st_mtime + 1.0 < since:
                continue
            rec = read_record(path)
        except (OSError, ValueError):
            continue
        num = path.parent.name
        found.append(((0, int(num)) if num.isdigit() else (1, num), rec))
    return SweepSummary(Path(sweep_dir), [r for _, r in sorted(found, key=lambda x: x[0])])


# the last sweep this process ran (set by the callback, read by the CLI)
LAST: SweepSummary | None = None


class SweepOutcome(Callback):
    """Collect the sweep's records when it ends (conf/config.yaml: hydra.callbacks)."""

    def __init__(self) -> None:
        self.t0 = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.t0 = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST
        LAST = collect(Path(str(config.hydra.sweep.dir)), since=self.t0)
