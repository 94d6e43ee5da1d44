"""Parallel jobs logging one sweep to a real `mlflow server`: one experiment, one parent run.

Each writer is its own process with its own lock dir (as on separate machines), released at
the same instant, so experiment creation races for real and must be settled by the server.
"""

from __future__ import annotations

import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

from qexp.record import FINISHED, Record
from tests.conftest import ROOT

N_WRITERS = 5

_WRITER = """
import json, sys, time
from pathlib import Path
from qexp.record import Record
from qexp.tracking.mlflow_sink import MlflowSink

uri, rec_path, lock_dir, go = sys.argv[1:5]
rec = Record.from_json(Path(rec_path).read_text())
sink = MlflowSink(uri, lock_dir=Path(lock_dir))
Path(rec_path).with_name("ready").touch()
deadline = time.monotonic() + 300
while not Path(go).exists() and time.monotonic() < deadline:
    time.sleep(0.002)
print(sink.log(rec, Path(rec_path).parent))
"""


def _record(i: int, sweep_dir, experiment: str) -> Record:
    return Record(
        record_id=f"race{i:02d}",
        status=FINISHED,
        experiment=experiment,
        config_hash=f"h{i}",
        choices={"model": "yolov8n", "quantizer": "none", "backend": "onnxruntime"},
        metrics={"map50_95": 0.3 + i / 100, "latency_ms_p50": 10.0 + i},
        sweep_id=str(sweep_dir),
        job_name=f"qexp#{i}",
    )


def test_parallel_writers_create_one_experiment_and_one_parent(mlflow_server, tmp_path):
    info, _ = mlflow_server
    experiment = f"race-{tmp_path.name}"
    sweep = tmp_path / "sweep"
    procs = []
    go = tmp_path / "go"
    for i in range(N_WRITERS):
        job_dir = sweep / str(i)
        job_dir.mkdir(parents=True)
        rec = _record(i, sweep, experiment)
        (job_dir / "result.json").write_text(rec.to_json())
        lock_dir = tmp_path / f"machine{i}"
        cmd = [sys.executable, "-c", _WRITER, info.uri, str(job_dir / "result.json")]
        procs.append(
            subprocess.Popen(
                [*cmd, str(lock_dir), str(go)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 180
    while sum((sweep / str(i) / "ready").exists() for i in range(N_WRITERS)) < N_WRITERS:
        assert time.monotonic() < deadline, "writers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    go.touch()  # released together: experiment and parent creation race for real
    results = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err

    client = MlflowClient(info.uri)
    exps = [e for e in client.search_experiments() if e.name == experiment]
    assert len(exps) == 1
    runs = client.search_runs([exps[0].experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("qexp.kind") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("qexp.kind") == "job"]
    assert len(parents) == 1
    assert len(jobs) == N_WRITERS
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
    for r in jobs:
        i = int(r.data.tags["qexp.record_id"][4:])
        assert r.data.metrics == _record(i, sweep, experiment).metrics
    # the run ids the writers printed are the runs in the store
    assert {out.strip().splitlines()[-1] for out, _ in results} == {r.info.run_id for r in jobs}
