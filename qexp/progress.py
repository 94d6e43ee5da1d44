"""Progress bars for long loops: rich on a terminal, a few log lines when piped (CI, Slurm)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("qexp")


def track(it: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    if total is None:
        try:
            total = len(it)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)
            for x in it:
                yield x
                bar.advance(task)
        return
    # Not a terminal: log at ~10% steps with an ETA, so long jobs stay readable in log files.
    t0 = time.perf_counter()
    step = max(1, (total or 0) // 10)
    for n, x in enumerate(it, start=1):
        yield x
        if total and (n % step == 0 or n == total):
            el = time.perf_counter() - t0
            eta = el / n * (total - n)
            log.info("%s: %d/%d (%.0f s, eta %.0f s)", description, n, total, el, eta)
