"""Latency of one forward call: warm-up, then median / p90 / mean over a fixed count."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from qexp.progress import track

log = logging.getLogger("qexp")


def measure(fn: Callable[[], Any], warmup: int = 10, iters: int = 50) -> np.ndarray:
    """Wall-clock milliseconds of ``iters`` calls of ``fn`` after ``warmup`` untimed ones."""
    if iters < 1:
        raise ValueError(f"backend.iters={iters}: must be >= 1")
    log.info("timing the forward pass: %d warm-up + %d timed calls", max(0, warmup), iters)
    for _ in range(max(0, warmup)):
        fn()
    out = np.empty(iters)
    for i in track(range(iters), "latency"):
        t = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t) * 1e3
    return out


def latency_metrics(times_ms: np.ndarray, batch: int) -> dict[str, float]:
    """The record's latency metrics (names carry their units) from per-call times."""
    mean = float(times_ms.mean())
    return {
        "latency_ms_p50": float(np.median(times_ms)),
        "latency_ms_p90": float(np.percentile(times_ms, 90)),
        "latency_ms_mean": mean,
        f"throughput_ips_b{batch}": batch * 1e3 / mean,
    }


def fixed_batch(images: np.ndarray, batch: int) -> np.ndarray:
    """Pad (with the last image) or cut to exactly ``batch`` images, for static-shape models."""
    n = images.shape[0]
    if n == batch:
        return images
    if n > batch:
        return images[:batch]
    return np.concatenate([images, np.repeat(images[-1:], batch - n, 0)])
