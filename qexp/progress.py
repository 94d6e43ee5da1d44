"""Progress of long loops: a rich bar on a terminal, periodic lines in logs.

On a terminal the bar shows on stderr and the periodic lines (~10% steps, with an ETA) go only
to log files (Hydra's job log), not to the screen under the bar. Piped (CI, Slurm, ``| tee``)
there is no bar and the lines go everywhere, so long jobs stay readable in any log.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("qexp")
PROGRESS = "qexp_progress"  # LogRecord attribute marking a periodic progress line


class _NotOnTerminal(logging.Filter):
    """Drop progress lines from a handler writing to a terminal (the bar shows them there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, PROGRESS, False)


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _keep_terminals_clean() -> None:
    """Put the filter on every handler (root's and qexp's) that writes to a terminal."""
    for logger in (logging.getLogger(), log):
        for h in logger.handlers:
            stream = getattr(h, "stream", None)
            if (
                isinstance(h, logging.StreamHandler)
                and not isinstance(h, logging.FileHandler)
                and _isatty(stream)
                and not any(isinstance(f, _NotOnTerminal) for f in h.filters)
            ):
                h.addFilter(_NotOnTerminal())


def _lines(it: Iterable[T], description: str, total: int | None) -> Iterator[T]:
    """Yield from ``it``, logging ~10% steps with an ETA (marked as progress lines)."""
    t0 = time.perf_counter()
    step = max(1, (total or 0) // 10)
    for n, x in enumerate(it, start=1):
        yield x
        if total and (n % step == 0 or n == total):
            el = time.perf_counter() - t0
            eta = el / n * (total - n)
            log.info(
                "%s: %d/%d (%.0f s, eta %.0f s)",
                description,
                n,
                total,
                el,
                eta,
                extra={PROGRESS: True},
            )


def track(it: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    if total is None:
        try:
            total = len(it)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if not _isatty(sys.stderr):
        yield from _lines(it, description, total)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    _keep_terminals_clean()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        for x in _lines(it, description, total):
            yield x
            bar.advance(task)
