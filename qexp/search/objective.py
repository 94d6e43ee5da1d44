"""A search trial's score, read from its result record against the reference row's record.

The objective is the speed ratio to the reference (fp32 on ONNX Runtime, fp16 on TensorRT:
whatever ``reference`` overrides make) of the same model in the same search: batch-32
throughput where both rows have it, else the batch-1 p50 latency. The constraint is the
mAP50-95 loss: ``loss - budget <= 0``; with ``strict``, the loss at the far end of the paired
bootstrap interval (qexp/eval/bootstrap.py), so that a recipe is within budget only if its
interval says so.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

from qexp.eval.bootstrap import Delta, Matches, paired_delta
from qexp.record import FINISHED, SKIPPED, Record, read_record

THROUGHPUT, LATENCY = "throughput_ips_b32", "latency_ms_p50"


@dataclass(frozen=True)
class Score:
    """What a trial measured, as the study stores it (Optuna user attributes)."""

    status: str  # the record's: FINISHED, FAILED, SKIPPED
    job_dir: str
    speedup: float | None = None  # the objective (> 1: faster than the reference)
    metric: str = ""
    loss_pt: float | None = None  # reference mAP50-95 - this one's, in points
    ci_pt: tuple[float, float] | None = None  # the paired 95 % interval of Δ (points)
    constraint: float | None = None  # <= 0: within budget
    map50_95: float | None = None
    latency_ms: float | None = None
    why: str = ""  # why there is no score (failed, skipped, no metric)

    @property
    def feasible(self) -> bool:
        return self.constraint is not None and self.constraint <= 0

    def attrs(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def measured(record: Record) -> Record:
    """The record holding the measurement: a job SKIPPED as the repeat of a FINISHED one
    (an axis its quantizer does not read differs) is that job's."""
    eq = record.equivalent_to
    if record.status == SKIPPED and eq is not None and eq.status == FINISHED:
        twin = read_record(Path(eq.job_dir))
        if twin.status == FINISHED:
            return twin
    return record


def matches_file(record: Record) -> Path | None:
    """The per-image matches of the record's main mAP (the backend's scope first), in its
    job dir or, for a resumed record, in the dir of the job it resumed."""
    dirs = [Path(d) for d in (record.job_dir, record.resumed_from) if d]
    for name in (f"matches_{record.choices.get('backend')}", "matches"):
        rel = record.artifacts.get(name)
        if not rel:
            continue
        for d in dirs:
            for p in (Path(rel), d / rel, d / "artifacts" / Path(rel).name):
                if p.is_absolute() and p.is_file():
                    return p
    return None


@functools.lru_cache(maxsize=512)
def _delta(row: str, ref: str, resamples: int) -> Delta:
    return paired_delta(Matches.load(Path(row)), Matches.load(Path(ref)), resamples)


def interval(record: Record, ref: Record, resamples: int = 300) -> Delta | None:
    a, b = matches_file(record), matches_file(ref)
    if a is None or b is None:
        return None
    try:
        return _delta(str(a), str(b), resamples)
    except ValueError:  # scored on other images
        return None


def speed(record: Record, ref: Record, metric: str = "auto") -> tuple[str, float] | None:
    """(metric, ratio to the reference, > 1 faster) or None where either lacks it."""
    m, r = record.metrics, ref.metrics
    if metric == "auto":
        metric = THROUGHPUT if THROUGHPUT in m and THROUGHPUT in r else LATENCY
    if metric not in m or metric not in r or not m[metric] or not r[metric]:
        return None
    ratio = m[metric] / r[metric] if metric.startswith("throughput") else r[metric] / m[metric]
    return metric, float(ratio)


def score(
    record: Record,
    ref: Record,
    budget_pt: float,
    strict: bool = False,
    metric: str = "auto",
    resamples: int = 300,
) -> Score:
    """The trial's speedup and how far its mAP50-95 loss is from the budget."""
    got = measured(record)
    if got.status != FINISHED:
        why = (got.reason or got.error or "").strip().splitlines()
        return Score(got.status, record.job_dir, why=why[0] if why else got.status)
    sp = speed(got, ref, metric)
    if sp is None or "map50_95" not in got.metrics:
        return Score(got.status, record.job_dir, why=f"no {metric} / map50_95 in the record")
    loss = (ref.metrics["map50_95"] - got.metrics["map50_95"]) * 100
    d = interval(got, ref, resamples)
    ci = (d.lo * 100, d.hi * 100) if d is not None else None
    # strict: the loss the interval still allows (its lower end of Δ), where there is one
    worst = -ci[0] if strict and ci is not None else loss
    lat = got.metrics.get(LATENCY)
    return Score(
        status=FINISHED,
        job_dir=got.job_dir,
        speedup=sp[1],
        metric=sp[0],
        loss_pt=loss,
        ci_pt=ci,
        constraint=worst - budget_pt,
        map50_95=got.metrics["map50_95"],
        latency_ms=float(lat) if lat is not None else None,
    )
