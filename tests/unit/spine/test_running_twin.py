"""Parallel launchers start equivalent jobs at the same moment: the second is SKIPPED as
equivalent to the running one instead of doing the same work twice."""

from __future__ import annotations

import os
import subprocess
import sys

from qexp.record import SKIPPED
from qexp.runner import JobSpec, config_hash, run_job
from tests.conftest import CHEAP_JOB, ROOT


def test_an_equivalent_job_running_elsewhere_is_skipped(compose, tmp_path):
    out = tmp_path / "out"
    cfg = compose([*CHEAP_JOB, "tracking=none", f"paths.output_dir={out}", "observer=entropy"])
    chash = config_hash(cfg)  # quantizer=none ignores the observer: same hash as minmax
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from qexp.runner import Index\n"
         f"i = Index(Path({str(out)!r}))\n"
         f"assert i.claim({chash!r}, Path('/elsewhere/job')) is None\n"
         "print('running', flush=True); sys.stdin.read()"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "running"
        rec = run_job(cfg, JobSpec(job_dir=tmp_path / "job", choices={}))
        assert rec.status == SKIPPED
        assert "equivalent to the job running now in /elsewhere/job" in rec.reason
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
