"""ΔmAP50-95 of a row against its reference row with the paired bootstrap 95 % interval.

Read from the jobs' ``matches*.npz`` artifacts (per-image COCO matches, qexp/eval/bootstrap.py),
so a report computes it for any two rows scored on the same images, without the ground truth
or a second COCO pass. Rows recorded before the artifact existed get no interval.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from qexp.eval.bootstrap import Delta, Matches, paired_delta
from qexp.report.load import artifact_path

RESAMPLES = 300
CI = "Δmap50_95 95% CI"
NOISE_MARK = "~"  # the interval holds 0: no difference these images can show
CROSS_MARK = "?"  # the interval holds the budget: within it or not is not settled


def matches_path(row: pd.Series) -> Path | None:
    """The row's per-image matches for its main mAP: the backend's own scope first."""
    for name in (f"matches_{row.get('backend')}", "matches"):
        p = artifact_path(row, name)
        if p is not None:
            return p
    return None


@functools.lru_cache(maxsize=256)
def _load(path: str) -> Matches:
    return Matches.load(Path(path))


@functools.lru_cache(maxsize=1024)
def _delta(row: str, ref: str, resamples: int) -> Delta | None:
    try:
        return paired_delta(_load(row), _load(ref), resamples)
    except ValueError:  # scored on other images: no paired interval
        return None


def delta_of(row: pd.Series, ref: pd.Series, resamples: int = RESAMPLES) -> Delta | None:
    """``row`` - ``ref`` mAP50-95 with its interval, or None where either lacks matches."""
    a, b = matches_path(row), matches_path(ref)
    if a is None or b is None:
        return None
    return _delta(str(a), str(b), resamples)


def fmt(d: Delta | None, budget_pt: float | None = None) -> str:
    """``[-1.55, +0.27] pt ~``: the interval in points, marked within noise / across budget."""
    if d is None:
        return ""
    marks = NOISE_MARK if d.within_noise() else ""
    if budget_pt is not None and d.crosses(budget_pt / 100):
        marks += CROSS_MARK
    return f"[{d.lo * 100:+.2f}, {d.hi * 100:+.2f}]" + (f" {marks}" if marks else "")


def note(budget_pt: float | None = None) -> str:
    s = (
        f"{CI}: paired bootstrap over images ({RESAMPLES} resamples, the same draws for the row "
        f"and its baseline), in points; {NOISE_MARK} = the interval holds 0 (within noise)"
    )
    if budget_pt is not None:
        s += f", {CROSS_MARK} = it holds the -{budget_pt:g} pt budget"
    return s
