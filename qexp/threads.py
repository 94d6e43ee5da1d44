"""How many threads a job gives torch and ONNX Runtime: its share of the cores.

Both libraries default to one thread per core, each, per process. Two of them in one job
(ONNX Runtime evaluating while torch runs the alignment reference), or several jobs of a
parallel sweep, then ask for several times the cores there are, and spinning thread pools wait
on each other: measured on a 2-core machine with one other busy process, an fp32 eval took 304 s
instead of ~35 s. So every job sizes both to ``cores / parallel jobs`` (``backend.threads: 0``,
the default) unless the user sets a number.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnxruntime as ort


def passive_openmp() -> None:
    """Make torch's OpenMP threads sleep, not spin, while they wait (unless the user chose).

    libgomp's threads spin on a barrier between parallel regions; when a core is busy with
    another process the spinning thread steals the time the late thread needs, and every op
    waits a time slice: measured on 2 cores with one busy process, yolov8n on 2 torch threads
    took 1.95 s an image spinning, 0.16 s passive (docs/results/cpu-eval-speed.md; ~10x worse
    under heavier load). libgomp reads the policy
    when it loads, so this runs in ``qexp/__init__.py``, before any qexp module imports torch
    (a process that imported torch first keeps the policy it started with)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cores() -> int:
    """Cores this process may run on (its affinity mask: taskset, cgroups, Slurm)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def launcher_config() -> Mapping[str, Any] | None:
    """The Hydra launcher config of the running job, or None outside a Hydra job."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        return HydraConfig.get().launcher
    except (ImportError, ValueError):
        return None


def cores_per_job(cores: int, launcher: Mapping[str, Any] | None) -> tuple[int, str]:
    """(cores one job may use, why) under ``launcher``.

    A launcher that gives each job its CPUs (submitit's ``cpus_per_task``, Ray's
    ``remote.num_cpus``) sets the share; one that runs ``n_jobs`` at once on this machine
    (joblib, as ``hydra/launcher=local_parallel``) splits the cores; any other runs one job at
    a time (Hydra's basic launcher)."""
    if not launcher:
        return cores, f"{cores} cores, one job at a time"
    remote = launcher.get("ray", {}).get("remote", {}) if launcher.get("ray") else {}
    cpus = launcher.get("cpus_per_task") or remote.get("num_cpus")
    if cpus:
        n = max(1, min(cores, int(cpus)))
        return n, f"{n} of {cores} cores, the launcher's CPUs per job"
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        return cores, f"{cores} cores, one job at a time"
    jobs = int(n_jobs)
    if jobs < 0:  # joblib: -1 = one per core, -2 = all but one, ...
        jobs = max(1, cores + 1 + jobs)
    jobs = max(1, jobs)
    return max(1, cores // jobs), f"{cores} cores / {jobs} parallel jobs"


@dataclass(frozen=True)
class Threads:
    """The intra-op thread count of a job, and where it came from (for the record)."""

    n: int
    source: str

    def info(self) -> dict[str, Any]:
        return {"threads": self.n, "threads_from": self.source}


def job_threads(requested: int = 0, launcher: Mapping[str, Any] | None = None) -> Threads:
    """``requested`` when positive (``backend.threads``), else this job's share of the cores
    (``launcher`` defaults to the running Hydra job's)."""
    if int(requested) > 0:
        return Threads(int(requested), "backend.threads")
    if int(requested) < 0:
        raise ValueError(f"backend.threads={requested}: 0 (this job's share of cores) or more")
    n, why = cores_per_job(
        available_cores(), launcher if launcher is not None else launcher_config()
    )
    return Threads(n, f"auto: {why}")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ort_options(so: ort.SessionOptions, n: int, spin: bool = False) -> ort.SessionOptions:
    """``n`` intra-op threads for a session, one inter-op thread, and no spin-waiting unless
    ``spin``: ONNX Runtime's pool otherwise busy-waits for the next op, which on a machine
    shared with torch or other jobs burns the cores they need (docs/results/cpu-eval-speed.md
    measures it)."""
    so.intra_op_num_threads = int(n)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    return so
