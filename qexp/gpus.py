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
import tempfile
from pathlib import Path
from typing import IO

from qexp.gpu_share import visible_gpus

log = logging.getLogger("qexp")
_HELD: list[IO[str]] = []  # open lock files: closing one releases its slot
_CLAIMED: dict[str, str] = {}


def lock_dir() -> Path:
    """Host-wide: GPUs belong to the machine, not to one output dir."""
    return Path(os.environ.get("QEXP_LOCK_DIR", Path(tempfile.gettempdir()) / "qexp-locks"))


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
