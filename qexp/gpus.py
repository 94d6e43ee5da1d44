"""One GPU per job process on a multi-GPU machine, through Hydra's joblib launcher.

``hydra/launcher=local_gpus`` runs a sweep in one joblib (loky) worker process per GPU. The first
job a worker runs claims a GPU slot with an exclusive ``flock`` on ``gpu<N>.lock`` and sets
``CUDA_VISIBLE_DEVICES=N`` before anything touches CUDA; the worker keeps that GPU (and its lock)
for its life, so its later jobs, its torch work and its TensorRT worker all run there. The lock
dies with the process, so a crashed worker's replacement claims the freed GPU. With more workers
than GPUs, slots are shared round-robin (``gpu<N>.<round>.lock``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

log = logging.getLogger("qexp")
_HELD: list[IO[str]] = []  # open lock files: closing one releases its slot
_CLAIMED: dict[str, str] = {}


def lock_dir() -> Path:
    """Host-wide: GPUs belong to the machine, not to one output dir."""
    return Path(os.environ.get("QEXP_LOCK_DIR", Path(tempfile.gettempdir()) / "qexp-locks"))


def visible_gpus() -> list[str]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists
    (no CUDA initialisation here: the parent of a sweep must not grab a device)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def gpu_count() -> int:
    """For launcher configs (``${qexp_gpus:}``): one job slot per GPU, at least one. The first
    answer is kept in QEXP_GPU_COUNT: a job process that claimed one GPU (and so sees only
    that one) resolves the launcher's n_jobs to the same number as the sweep's parent did, so
    it sizes its CPU threads by the real number of parallel jobs."""
    if os.environ.get("QEXP_GPU_COUNT", "").isdigit():
        return max(1, int(os.environ["QEXP_GPU_COUNT"]))
    n = max(1, len(visible_gpus()))
    os.environ["QEXP_GPU_COUNT"] = str(n)
    return n


def jobs_per_gpu() -> int:
    """Jobs a launcher runs at once on each GPU (``QEXP_JOBS_PER_GPU``, else from the cores):
    a TensorRT build keeps one CPU thread busy and its GPU nearly idle, so several jobs share
    a GPU while they build; their timings still take the GPU alone (qexp/trt/execute.py
    ``timing_alone``). Four a GPU needs 16 cores a GPU (an H100 machine of 16 has one GPU)."""
    env = os.environ.get("QEXP_JOBS_PER_GPU", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = os.cpu_count() or 1
    return max(1, min(4, cores // (4 * gpu_count())))


def gpu_jobs() -> int:
    """For launcher configs (``${qexp_gpu_jobs:}``): parallel jobs on this machine's GPUs."""
    return gpu_count() * jobs_per_gpu()


def claim(gpus: list[str] | None = None, rounds: int = 64) -> str | None:
    """Claim one GPU for this process and make it the only visible one; idempotent."""
    if "gpu" in _CLAIMED:
        return _CLAIMED["gpu"]
    gpus = visible_gpus() if gpus is None else gpus
    if not gpus:
        return None
    os.environ.setdefault("QEXP_GPU_COUNT", str(len(gpus)))  # before the mask below hides them
    d = lock_dir()
    d.mkdir(parents=True, exist_ok=True)
    for r in range(rounds):
        for g in gpus:
            f = open(d / (f"gpu{g}.lock" if r == 0 else f"gpu{g}.{r}.lock"), "a")  # noqa: SIM115
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            _HELD.append(f)
            _CLAIMED["gpu"] = g
            os.environ["CUDA_VISIBLE_DEVICES"] = g
            log.info("this job process runs on GPU %s (slot lock %s)", g, f.name)
            return g
    return None


def claim_for_launcher(n_jobs: int | None) -> str | None:
    """Claim a GPU when a parallel launcher runs several jobs at once on a multi-GPU host."""
    if not n_jobs or int(n_jobs) <= 1:
        return None
    gpus = visible_gpus()
    return claim(gpus) if len(gpus) > 1 else None
