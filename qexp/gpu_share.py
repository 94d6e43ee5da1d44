"""How many jobs this machine's GPUs take at once: the GPUs a process may use, and the jobs
each GPU runs side by side (a TensorRT build is one CPU thread and leaves the GPU nearly idle).

Base layer: the launcher configs (``${qexp_gpus:}``, ``${qexp_gpu_jobs:}``), the TensorRT
backend (its build slots per GPU) and ``qexp/gpus.py`` (the GPU claim of a job process) all
read the same numbers from here.
"""

from __future__ import annotations

import os
import shutil
import subprocess


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


def gpu_jobs(times: int | str = 1) -> int:
    """For launcher configs (``${qexp_gpu_jobs:}``): parallel jobs on this machine's GPUs;
    ``${qexp_gpu_jobs:2}``: twice that (a search's batch of trials that keeps the pool busy)."""
    return gpu_count() * jobs_per_gpu() * int(times)
