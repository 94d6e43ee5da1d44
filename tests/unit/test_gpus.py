"""GPU slots for parallel jobs (qexp/gpus.py) and the host-wide latency lock, with real
processes and real flocks (no GPU needed: the slots are names)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from qexp import gpu_share, gpus
from qexp.trt.execute import host_lock
from tests.conftest import ROOT

CLAIM = (
    "import json, os, sys, time; from qexp import gpus; "
    "g = gpus.claim(['0', '1']); "
    "print(json.dumps([g, os.environ.get('CUDA_VISIBLE_DEVICES')]), flush=True); "
    "sys.stdin.read()"  # hold the slot until the parent closes stdin
)


def _claimer(lock_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT), QEXP_LOCK_DIR=str(lock_dir))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.Popen([sys.executable, "-c", CLAIM], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip


def test_each_worker_process_gets_its_own_gpu_then_they_share(tmp_path):
    procs = [_claimer(tmp_path) for _ in range(4)]
    got = [json.loads(p.stdout.readline()) for p in procs]
    for g, visible in got:
        assert g == visible  # CUDA_VISIBLE_DEVICES is set to the claimed GPU
    assert sorted(g for g, _ in got) == ["0", "0", "1", "1"]  # round-robin past 2 workers
    procs[0].stdin.close()
    procs[0].wait(timeout=30)
    freed = got[0][0]
    late = _claimer(tmp_path)  # a replacement worker takes the GPU the dead one held
    assert json.loads(late.stdout.readline())[0] == freed
    for p in [*procs[1:], late]:
        p.stdin.close()
        p.wait(timeout=30)


def test_no_claim_without_a_parallel_launcher_or_a_second_gpu(monkeypatch):
    monkeypatch.delenv("QEXP_GPU_COUNT", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert gpus.claim_for_launcher(None) is None
    assert gpus.claim_for_launcher(4) is None  # one GPU: nothing to spread over
    assert gpu_share.visible_gpus() == ["3"] and gpu_share.gpu_count() == 1
    monkeypatch.delenv("QEXP_GPU_COUNT")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_share.visible_gpus() == [] and gpu_share.gpu_count() == 1


def test_a_job_that_claimed_a_gpu_still_counts_the_hosts_gpus(monkeypatch):
    """The sweep's n_jobs (${qexp_gpus:}) resolves again inside each job, after the job's
    CUDA_VISIBLE_DEVICES shows only its own GPU: it must still say 4, or the job sizes its
    CPU threads as if it ran alone (measured on the 4xH100: 64 threads per job, not 16)."""
    from omegaconf import OmegaConf

    from qexp.config_store import register_configs

    register_configs()
    monkeypatch.delenv("QEXP_GPU_COUNT", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    launcher = OmegaConf.create({"n_jobs": "${qexp_gpus:}"})
    assert launcher.n_jobs == 4
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")  # what gpus.claim leaves in a job process
    assert launcher.n_jobs == 4


def test_latency_lock_serialises_timing_across_processes(tmp_path):
    lock, log = tmp_path / "latency.lock", tmp_path / "order.txt"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from qexp.trt.execute import host_lock\n"
         f"with host_lock({str(lock)!r}):\n"
         "    print('locked', flush=True); time.sleep(1.5)\n"
         f"    open({str(log)!r}, 'a').write('holder done\\n')"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    with host_lock(str(lock)), open(log, "a") as f:
        f.write("second\n")
    holder.wait(timeout=30)
    assert log.read_text().splitlines() == ["holder done", "second"]
