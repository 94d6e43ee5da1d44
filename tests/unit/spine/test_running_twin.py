"""Parallel launchers start equivalent jobs at the same moment: the second is SKIPPED as
equivalent to the running one instead of doing the same work twice. A job equivalent to a
FINISHED one is SKIPPED too. Either way the record says which job it repeats
(``equivalent_to``), so reports never parse the reason's text."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from qexp.record import FINISHED, RUNNING, SKIPPED, Equivalent, Record, read_record
from qexp.runner import Index, JobSpec, canonical, config_hash, run_job
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
        assert rec.equivalent_to == Equivalent("/elsewhere/job", RUNNING)
        assert read_record(tmp_path / "job") == rec
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_job_equivalent_to_a_finished_one_names_it(compose, tmp_path):
    out = tmp_path / "out"
    common = [*CHEAP_JOB, "tracking=none", f"paths.output_dir={out}"]
    done_cfg = compose([*common, "observer=minmax"])
    done_dir = tmp_path / "done"
    done = Record(
        record_id=uuid.uuid4().hex, status=FINISHED, experiment="e",
        config_hash=config_hash(done_cfg), config=canonical(done_cfg),
        choices={"quantizer": "none", "observer": "minmax", "calibrator": "none", "ignore": "none"},
        job_dir=str(done_dir), metrics={"map50_95": 0.5},
    )  # fmt: skip
    done.write(done_dir)
    Index(out).add(done)
    cfg = compose([*common, "observer=entropy", "calibrator=minmax"])
    rec = run_job(cfg, JobSpec(job_dir=tmp_path / "job", choices={}))
    assert rec.status == SKIPPED
    assert rec.equivalent_to == Equivalent(str(done_dir), FINISHED, ("calibrator", "observer"))
    assert read_record(tmp_path / "job").equivalent_to == rec.equivalent_to
