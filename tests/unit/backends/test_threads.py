"""Thread sizing: a job's share of the cores, applied to real torch and ONNX Runtime sessions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from qexp.backends.onnxruntime import make_session
from qexp.threads import available_cores, cores_per_job, job_threads, ort_options, torch_threads

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def test_share_of_the_cores_per_launcher():
    assert cores_per_job(8, None)[0] == 8
    assert cores_per_job(8, {"_target_": "hydra.BasicLauncher"})[0] == 8  # one job at a time
    assert cores_per_job(8, {"_target_": JOBLIB, "n_jobs": 2}) == (4, "8 cores / 2 parallel jobs")
    assert cores_per_job(8, {"_target_": JOBLIB, "n_jobs": 3})[0] == 2
    assert cores_per_job(2, {"_target_": JOBLIB, "n_jobs": 4})[0] == 1  # never 0
    assert cores_per_job(8, {"_target_": JOBLIB, "n_jobs": -1})[0] == 1  # one job per core
    assert cores_per_job(8, {"_target_": JOBLIB, "n_jobs": -2})[0] == 1  # 7 jobs
    assert cores_per_job(16, {"cpus_per_task": 4, "tasks_per_node": 1})[0] == 4  # submitit
    assert cores_per_job(2, {"cpus_per_task": 8})[0] == 2  # not more than there are
    assert cores_per_job(16, {"ray": {"remote": {"num_cpus": 4}}})[0] == 4


def test_composed_parallel_launcher_sets_the_share(tmp_path):
    """The real local_parallel preset, read as a job reads it (HydraConfig's launcher node)."""
    from tests.e2e.test_launchers import _launcher

    launcher = _launcher("local_parallel", tmp_path, "hydra.launcher.n_jobs=3")
    assert cores_per_job(12, launcher)[0] == 4
    basic = _launcher("basic", tmp_path)
    assert cores_per_job(12, basic)[0] == 12


def test_user_override_and_auto():
    assert job_threads(3).n == 3 and job_threads(3).source == "backend.threads"
    auto = job_threads(0, launcher={})
    assert auto.n == available_cores() == len(os.sched_getaffinity(0))
    assert auto.info() == {"threads": auto.n, "threads_from": auto.source}
    with pytest.raises(ValueError, match="backend.threads"):
        job_threads(-1)


@pytest.mark.parametrize("user", [None, "ACTIVE"])
def test_importing_qexp_makes_openmp_threads_wait_passively(user):
    """What libgomp itself read at load (OMP_DISPLAY_ENV prints its settings); a user's own
    OMP_WAIT_POLICY wins."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(OMP_DISPLAY_ENV="TRUE", PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    if user:
        env["OMP_WAIT_POLICY"] = user
    code = "import qexp, torch; torch.ones(4096).sum()"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert f"OMP_WAIT_POLICY = '{user or 'PASSIVE'}'" in p.stderr


def test_torch_threads_set_and_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def _conv_onnx(path: Path) -> Path:
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
    torch.onnx.export(conv, torch.zeros(1, 3, 32, 32), str(path), dynamo=False)
    return path


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.parametrize("n", [1, 3])
def test_session_runs_on_n_threads_without_spinning(tmp_path, n):
    path = _conv_onnx(tmp_path / "conv.onnx")
    before = _os_threads()
    sess = make_session(path, threads=n)
    # ONNX Runtime's intra-op pool: the calling thread plus n - 1 workers
    assert _os_threads() - before == n - 1
    so = sess.get_session_options()
    assert so.intra_op_num_threads == n and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    out = sess.run(None, {sess.get_inputs()[0].name: np.ones((1, 3, 32, 32), np.float32)})[0]
    assert out.shape == (1, 8, 30, 30)
    spinning = make_session(path, threads=n, spin=True).get_session_options()
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_session_threads_zero_is_the_job_share(tmp_path):
    path = _conv_onnx(tmp_path / "conv.onnx")
    assert make_session(path).get_session_options().intra_op_num_threads == job_threads().n
    so = ort_options(ort.SessionOptions(), 2)
    assert so.intra_op_num_threads == 2


@pytest.mark.assets
def test_a_job_records_and_applies_its_threads(tmp_path, compose):
    """The record says the thread count the job used; the torch reference pass inside the ONNX
    Runtime backend runs on it too (read from a forward hook of the real module). 1 thread,
    as torch's own default here would be the core count."""
    from qexp.data import load_eval_data
    from qexp.job import Job
    from qexp.registry import BACKENDS, MODEL_FAMILIES, QUANTIZERS

    cfg = compose(
        ["data=tiny", "data.max_images=1", "model.imgsz=128", "backend.warmup=0",
         "backend.iters=1", "backend.threads=1"]
    )  # fmt: skip
    job = Job(cfg=cfg, dir=tmp_path / "job", cache_dir=tmp_path / "cache")
    det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    data = load_eval_data(cfg.data, job)
    deploy = QUANTIZERS.build(job.settings.quantizer).quantize(job, det, data)
    seen: list[int] = []
    deploy.module.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    BACKENDS.build(job.settings.backend).run(job, deploy, data)
    assert seen and set(seen) == {1}  # the alignment pass ran on backend.threads
    assert torch.get_num_threads() == before
    assert job.info["threads"] == job.info["ort_threads"] == 1
    assert job.info["threads_from"] == "backend.threads" and job.info["ort_spinning"] is False
