"""Launcher configs: Slurm (composed + rendered by submitit, run by submitit's local executor),
joblib for CPU sweeps, Ray (composition only: see docs/scale-out.md)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from qexp.config_store import register_configs
from qexp.record import FINISHED, find_records, read_record
from tests.conftest import CHEAP_JOB, CONF

needs_submitit = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher not installed (pip install hydra-submitit-launcher)",
)
needs_joblib = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="hydra-joblib-launcher not installed (pip install hydra-joblib-launcher)",
)


def _launcher(name: str, tmp_path: Path, *overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"hydra/launcher={name}",
                f"hydra.sweep.dir={tmp_path / 'sweep'}",
                *overrides,
            ],
            return_hydra_config=True,
        )
    return cfg.hydra.launcher


@needs_submitit
def test_slurm_config_renders_a_job_array_with_one_gpu_per_job(tmp_path, monkeypatch):
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm.slurm import _make_sbatch_string

    monkeypatch.setenv("QEXP_SLURM_PARTITION", "gpu")
    # submitit's Slurm executor refuses to exist where `srun` is not on PATH; an empty
    # executable satisfies that check (nothing is submitted or run: we only render the script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    launcher = _launcher("slurm", tmp_path, "hydra.launcher.mem_gb=48")
    assert launcher._target_.endswith("SlurmLauncher")
    params = OmegaConf.to_container(launcher, resolve=True)
    params.pop("_target_")
    assert params["gpus_per_node"] == 1 and params["tasks_per_node"] == 1
    assert params["partition"] == "gpu" and params["account"] is None
    # what the plugin's launch() does with these params, then submitit's own sbatch text:
    # a key submitit does not know, or a bad value, fails here as it would on the cluster
    folder = params.pop("submitit_folder")
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=folder, slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    slurm = executor._executor.parameters
    text = _make_sbatch_string(command="qexp-job", folder=folder, map_count=200, **slurm)
    lines = set(text.splitlines())
    assert "#SBATCH --array=0-199%32" in lines
    assert "#SBATCH --gpus-per-node=1" in lines
    assert "#SBATCH --ntasks-per-node=1" in lines
    assert "#SBATCH --partition=gpu" in lines
    assert "#SBATCH --mem=48GB" in lines
    assert "#SBATCH --time=120" in lines
    assert "#SBATCH --cpus-per-task=8" in lines
    assert not any("--account" in line for line in lines)
    assert str(tmp_path / "sweep" / ".submitit") in text


@pytest.mark.assets
@needs_submitit
def test_slurm_local_runs_a_sweep_through_submitit(qexp):
    p = qexp(
        "-m",
        "hydra/launcher=slurm_local",
        "seed=0,1",
        "tracking=none",
        "experiment_name=submitit",
        *CHEAP_JOB,
    )
    recs = [read_record(r) for r in find_records(qexp.out / "sweeps")]
    assert sorted(r.status for r in recs) == [FINISHED, FINISHED], p.stderr[-3000:]
    assert {r.config["seed"] for r in recs} == {0, 1}
    assert all(0.0 <= r.metrics["map50_95"] <= 1.0 for r in recs)
    sweep_dir = Path(recs[0].sweep_id)
    assert (sweep_dir / ".submitit").is_dir(), "submitit's job folder (pickles, logs) is missing"
    logs = list((sweep_dir / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2


@pytest.mark.assets
@needs_joblib
def test_local_parallel_runs_jobs_in_worker_processes(qexp):
    qexp(
        "-m",
        "hydra/launcher=local_parallel",
        "hydra.launcher.n_jobs=2",
        "seed=0,1,2",
        "tracking=none",
        *CHEAP_JOB,
        "backend.threads=0",  # automatic: this job's share of the cores
    )
    recs = [read_record(r) for r in find_records(qexp.out / "sweeps")]
    assert sorted(r.config["seed"] for r in recs) == [0, 1, 2]
    assert all(r.status == FINISHED for r in recs), [r.error for r in recs]
    assert len({r.record_id for r in recs}) == 3
    # each worker read the launcher's n_jobs from HydraConfig and took half the cores
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {(r.info["threads"], r.info["ort_threads"]) for r in recs} == {(share, share)}
    assert all("/ 2 parallel jobs" in r.info["threads_from"] for r in recs)


def test_ray_config_composes_with_one_gpu_per_job(tmp_path):
    launcher = _launcher("ray_gpus", tmp_path)
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher.ray.remote.num_gpus == 1
    assert launcher.ray.init.address is None
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None:
        from hydra_plugins.hydra_ray_launcher._config import RayLauncherConf

        # the plugin's own schema accepts our standalone copy
        OmegaConf.merge(OmegaConf.structured(RayLauncherConf), launcher)


@needs_joblib
def test_local_parallel_config_composes(tmp_path):
    launcher = _launcher("local_parallel", tmp_path, "hydra.launcher.n_jobs=3")
    assert launcher.n_jobs == 3 and launcher.backend == "loky"


@pytest.mark.assets
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
    reason="hydra-ray-launcher not installed (it pins cloudpickle<3; see docs/scale-out.md)",
)
def test_ray_runs_a_cpu_sweep(qexp):
    import subprocess
    import sys

    try:
        qexp(
            "-m",
            "hydra/launcher=ray_gpus",
            "hydra.launcher.ray.remote.num_gpus=0",  # a CPU box here; 1 per job on GPUs
            "hydra.launcher.ray.remote.num_cpus=1",
            "hydra.launcher.ray.init.num_gpus=0",
            "+hydra.launcher.ray.init.num_cpus=2",
            "seed=0,1",
            "tracking=none",
            *CHEAP_JOB,
        )
    finally:  # Ray's idle workers can outlive the sweep: stop them (see docs/scale-out.md)
        subprocess.run(
            [sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"],
            capture_output=True,
            timeout=120,
        )
    recs = [read_record(r) for r in find_records(qexp.out / "sweeps")]
    assert sorted(r.config["seed"] for r in recs) == [0, 1]
    assert all(r.status == FINISHED for r in recs), [r.error for r in recs]
