"""Builds share a GPU, a timing takes it alone, and waiting timings are not starved by builds
(qexp/trt/execute.py building / timing_alone), with real flocks between threads."""

from __future__ import annotations

import threading
import time

from qexp.trt import execute


def test_lock_path_is_per_gpu(tmp_path):
    lock = str(tmp_path / "latency.lock")
    a = execute.gpu_lock_path(lock, {"uuid": "GPU-aaa", "index": 0})
    b = execute.gpu_lock_path(lock, {"uuid": "GPU-bbb", "index": 1})
    assert a != b and a.startswith(str(tmp_path))
    assert execute.gpu_lock_path(None, {"uuid": "GPU-aaa"}) is None


def test_builds_overlap_and_timing_waits_for_them(tmp_path):
    path = str(tmp_path / "gpu-x.builds")
    events: list[str] = []
    two_in = threading.Barrier(2, timeout=10)
    release = threading.Event()

    def build(name: str) -> None:
        with execute.building(path):
            events.append(f"{name} in")
            two_in.wait()  # both builds hold the lock at once, or this times out
            release.wait(10)
            events.append(f"{name} out")

    def timing() -> None:
        with execute.timing_alone(path):
            events.append("timing")

    builds = [threading.Thread(target=build, args=(n,)) for n in ("a", "b")]
    for t in builds:
        t.start()
    while len(events) < 2:
        time.sleep(0.01)
    timer = threading.Thread(target=timing)
    timer.start()
    time.sleep(0.3)
    assert "timing" not in events  # waits while builds run
    late: list[str] = []

    def late_build() -> None:
        with execute.building(path):
            late.append("in")
            events.append("late in")

    t_late = threading.Thread(target=late_build)
    t_late.start()
    time.sleep(0.3)
    assert not late  # a build does not start while a timing waits (no starvation)
    release.set()
    for t in [*builds, timer, t_late]:
        t.join(10)
    assert events.index("timing") > max(events.index("a out"), events.index("b out"))
    assert events.index("late in") > events.index("timing")
