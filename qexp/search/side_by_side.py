"""The best trial and the reference timed again, side by side in one process, at the end.

Each trial's speed ratio reads its latency against the reference's, timed minutes apart; on a
machine shared with other work the load moves in between. So the search ends by timing the two
ONNX files the rows ran, round by round in turn (the same load hits both), on ONNX Runtime
with the trials' threads: the ratio the page quotes for the best.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from qexp.backends.onnxruntime import make_session
from qexp.record import Record

ROUNDS, CALLS = 5, 10


def onnx_of(record: Record) -> Path | None:
    """The ONNX file the row's backend ran (its deploy form where it had one)."""
    for name in ("onnx_qlinear", "onnx"):
        rel = record.artifacts.get(name)
        if rel:
            p = Path(rel) if Path(rel).is_absolute() else Path(record.job_dir) / rel
            if p.is_file():
                return p
    return None


def retime(ref: Record, best: Record, threads: int = 1) -> dict | None:
    """{ref_ms, best_ms, ratio, rounds, calls}: p50 of each over interleaved rounds, or None
    where a file is gone or a row did not run on ONNX Runtime."""
    if "onnxruntime" not in (ref.choices.get("backend"), best.choices.get("backend")):
        return None
    paths = [onnx_of(ref), onnx_of(best)]
    if None in paths:
        return None
    sessions = [make_session(p, threads) for p in paths if p is not None]
    feeds = []
    for s in sessions:
        shape = [d if isinstance(d, int) else 1 for d in s.get_inputs()[0].shape]
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        feeds.append({s.get_inputs()[0].name: x})
    times: list[list[float]] = [[], []]
    for _ in range(ROUNDS):
        for i, (s, feed) in enumerate(zip(sessions, feeds, strict=True)):
            s.run(None, feed)  # one untimed call: the other session ran last
            for _ in range(CALLS):
                t = time.perf_counter()
                s.run(None, feed)
                times[i].append((time.perf_counter() - t) * 1e3)
    ref_ms, best_ms = (float(np.median(t)) for t in times)
    return {
        "ref_ms": ref_ms,
        "best_ms": best_ms,
        "ratio": ref_ms / best_ms,
        "rounds": ROUNDS,
        "calls": CALLS,
        "threads": threads,
    }
