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


def test_build_slots_cap_the_builds_of_every_process_on_a_gpu(tmp_path):
    """Two sweeps side by side on one GPU (threads here: each open() is its own flock holder,
    as each process's is) build at most ``slots`` engines at once; the rest wait their turn."""
    path = str(tmp_path / "gpu-x.builds")
    inside, most = [0], [0]
    guard = threading.Lock()

    def build() -> None:
        with execute.building(path, slots=2):
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.3)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=build) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    assert most[0] == 2  # two at once, never three


def test_no_slots_means_no_cap(tmp_path):
    path = str(tmp_path / "gpu-x.builds")
    three_in = threading.Barrier(3, timeout=10)

    def build() -> None:
        with execute.building(path, slots=None):
            three_in.wait()  # all three hold the lock at once, or this times out

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not three_in.broken
