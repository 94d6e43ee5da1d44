"""Faults with real processes and files: SIGKILL mid-job, a stopped tracking server, a full disk.

Each test drives the real `qexp` CLI in a subprocess on a cheap real job (one image at 320 on
ONNX Runtime, the exported ONNX cached for the session).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from qexp import procs
from qexp.record import FINISHED, RUNNING, find_records, read_record
from qexp.tracking import server
from qexp.tracking.ingest import IngestCount, ingest
from tests.conftest import ASSETS, CHEAP_JOB, ROOT
from tests.unit.tracking.resume_sweeps import check_one_run_per_job, three_sweeps

pytestmark = pytest.mark.assets


def _cmd(out: Path, cache: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "qexp.cli",
        *args,
        f"paths.output_dir={out}",
        f"paths.cache_dir={cache}",
    ]


def _env() -> dict[str, str]:
    return dict(os.environ, QEXP_ASSETS=str(ASSETS), PYTHONUNBUFFERED="1")


def _wait_for(pred, what: str, proc: subprocess.Popen | None = None, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"qexp exited ({proc.returncode}) before {what}:\n{out[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _status(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """A real `mlflow server` (qexp server start) for this module; stopped with a ps check."""
    out = tmp_path_factory.mktemp("faults-srv")
    info = server.start(out, port=0)
    try:
        yield info, out
    finally:
        server.stop(out)
        left = [p.args for p in procs.processes_mentioning(str(out))]
        assert not left, f"mlflow server processes left behind: {left}"


def test_sigkill_midjob_leaves_a_record_and_resume_reruns_it(qexp, shared_cache, tmp_path, caplog):
    out, sweep = qexp.out, qexp.out / "sweeps" / "kill"
    # the kill lands within ~50 ms of job #1's RUNNING record; its work (model load, ORT
    # session, eval) takes seconds, so it is surely still running then
    args = ["-m", f"hydra.sweep.dir={sweep}", "seed=0,1", "tracking=none", *CHEAP_JOB]
    proc = subprocess.Popen(
        _cmd(out, shared_cache, *args),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: _status(sweep / "1" / "result.json") == RUNNING, "job #1 RUNNING", proc)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole sweep dies at once, no cleanup runs
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    done, killed = read_record(sweep / "0"), read_record(sweep / "1")
    assert done.status == FINISHED and killed.status == RUNNING
    assert killed.config_hash and not killed.metrics
    index = out / "index"
    assert (index / f"{done.config_hash}.txt").exists()
    assert not (index / f"{killed.config_hash}.txt").exists(), "a killed job must not be indexed"

    uri = f"sqlite:///{tmp_path / 'ingest.db'}"
    with caplog.at_level(logging.WARNING, logger="qexp"):
        assert ingest([sweep], uri=uri) == IngestCount(logged=1, present=0, skipped=1)
    assert "never finished" in caplog.text

    again = qexp(*args)  # resume: the same sweep again
    assert "already FINISHED" in again.stderr + again.stdout
    resumed, rerun = read_record(sweep / "0"), read_record(sweep / "1")
    assert resumed.record_id == done.record_id and resumed.resumed_from
    assert rerun.status == FINISHED and rerun.config_hash == killed.config_hash
    assert 0.0 <= rerun.metrics["map50_95"] <= 1.0
    assert ingest([sweep], uri=uri) == IngestCount(logged=1, present=1, skipped=0)


def test_tracking_server_down_records_stay_and_ingest_recovers(qexp, tracking_server):
    info, srv_out = tracking_server
    assert server.stop(srv_out)  # the real server goes away before the sweep
    p = qexp(
        "-m",
        "seed=0,1",
        "tracking=mlflow_server",
        f"tracking.uri={info.uri}",
        *CHEAP_JOB,
        "experiment_name=server_down",
    )
    recs = [read_record(r) for r in find_records(qexp.out / "sweeps")]
    assert [r.status for r in recs] == [FINISHED, FINISHED]
    log = p.stdout + p.stderr
    assert "not answering" in log and "qexp ingest" in log
    assert "report was not logged to MLflow" in log  # no minutes of MLflow retries at sweep end

    restarted = server.start(srv_out, port=info.port)  # same port, same sqlite store
    assert restarted.uri == info.uri
    assert ingest([qexp.out / "sweeps"], uri=info.uri) == IngestCount(logged=2)
    client = MlflowClient(info.uri)
    exp = client.get_experiment_by_name("server_down")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    jobs = {r.data.tags["qexp.record_id"]: r for r in runs if r.data.tags["qexp.kind"] == "job"}
    assert set(jobs) == {r.record_id for r in recs}
    for r in recs:  # every metric of every record made it, with its value
        assert jobs[r.record_id].data.metrics == pytest.approx(r.metrics)
    assert len([r for r in runs if r.data.tags["qexp.kind"] == "sweep"]) == 1
    assert ingest([qexp.out / "sweeps"], uri=info.uri) == IngestCount(present=2)


def test_server_up_sweep_logs_every_run_and_metric(qexp, tracking_server):
    info, srv_out = tracking_server
    server.start(srv_out, port=info.port)  # no-op when the previous test restarted it
    qexp(
        "-m",
        "seed=0,1",
        "tracking=mlflow_server",
        f"tracking.uri={info.uri}",
        *CHEAP_JOB,
        "experiment_name=server_up",
    )
    recs = [read_record(r) for r in find_records(qexp.out / "sweeps")]
    client = MlflowClient(info.uri)
    exp = client.get_experiment_by_name("server_up")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    jobs = {r.data.tags["qexp.record_id"]: r for r in runs if r.data.tags["qexp.kind"] == "job"}
    assert set(jobs) == {r.record_id for r in recs} and len(recs) == 2
    for r in recs:
        assert jobs[r.record_id].data.metrics == pytest.approx(r.metrics)


def test_a_server_store_keeps_one_run_per_job_of_a_resumed_sweep(
    tracking_server, tmp_path, monkeypatch
):
    """A sweep run three times (its records: tests/unit/tracking/resume_sweeps.py) logged to
    the real `mlflow server`: a run per job, filed under every sweep, a parent per sweep; the
    sink's locks for a server store live under QEXP_HOME, not in the user's ~/.cache."""
    info, srv_out = tracking_server
    server.start(srv_out, port=info.port)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    sweeps = three_sweeps(tmp_path)
    assert ingest([tmp_path / "sweeps"], uri=info.uri) == IngestCount(logged=6)
    check_one_run_per_job(info.uri, sweeps)
    assert not (home / ".cache" / "qexp").exists()
    assert list(Path(os.environ["QEXP_HOME"]).glob(".qexp-*.lock"))


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB tmpfs (needs root / CAP_SYS_ADMIN, as in CI); unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> Path:
    """Write until the disk is full (ENOSPC); returns the filler file."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # unbuffered: nothing left to flush at close
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


def test_disk_full_while_writing_the_record_leaves_no_truncated_json(
    qexp, shared_cache, small_disk
):
    out = small_disk / "outputs"
    sweep = out / "sweeps" / "full"
    # 50 timed iterations: the job is still measuring when the disk is filled
    args = ["-m", f"hydra.sweep.dir={sweep}", "tracking=none", *CHEAP_JOB[:4], "backend.iters=50"]
    args += CHEAP_JOB[5:]
    proc = subprocess.Popen(
        _cmd(out, shared_cache, *args),
        cwd=ROOT,
        env=dict(_env(), HYDRA_FULL_ERROR="1"),  # the full traceback shows where it failed
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: _status(sweep / "0" / "result.json") == RUNNING, "RUNNING", proc)
        filler = _fill(small_disk)  # the job is measuring; its final record will not fit
        output = proc.communicate(timeout=600)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "No space left on device" in output and "atomic_write_text" in output, output[-3000:]
    rec = read_record(sweep / "0")  # still whole JSON: the RUNNING record, not half a FINISHED
    assert rec.status == RUNNING
    assert not list((sweep / "0").glob(".result.json.*.tmp")), "a temp file was left behind"

    filler.unlink()  # space again: re-running the sweep re-runs the job
    subprocess.run(
        _cmd(out, shared_cache, *args),
        cwd=ROOT,
        env=_env(),
        check=True,
        capture_output=True,
        timeout=600,
    )
    rec = read_record(sweep / "0")
    assert rec.status == FINISHED and rec.config_hash and rec.metrics
