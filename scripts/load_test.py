"""Load test: a sweep of cheap real jobs, N parallel workers, all logging to one `mlflow server`.

    python scripts/load_test.py --jobs 200 --workers 4

Starts a server (`qexp server start`, 127.0.0.1, sqlite), warms the ONNX export cache with one
job, runs ``qexp -m hydra/launcher=local_parallel tracking=mlflow_server seed=range(0,N)``, then
counts what arrived: result records on disk against MLflow runs, and every metric of every
record against the run's logged metrics (name and value). It prints runs expected/recorded,
metrics expected/recorded, and qexp's overhead per job around the measured work
(``info.work_s``: model load, export-cache lookup, ORT session, eval, latency). The server is
stopped at the end, whatever happens; exit status 1 when a run or a metric is missing.

Why these jobs: each is a real qexp job (yolov8n, one COCO image at 320, ONNX Runtime with
one thread, one timed iteration, the exported ONNX cached) that differs only in ``seed``, so
each has its own config hash and really runs: no job is SKIPPED or resumed, and each sends a
full set of metrics. The work per job is small, so qexp's own cost is what the test weighs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qexp.record import find_records, read_record  # noqa: E402
from qexp.tracking import server  # noqa: E402

CHEAP = [
    "data=tiny",
    "data.max_images=1",
    "model.imgsz=320",
    "backend.warmup=0",
    "backend.iters=1",
    "backend.align=false",
    "backend.threads=1",
]


def _qexp(out: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "qexp.cli", *args, f"paths.output_dir={out}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("QEXP_ASSETS", str(ROOT.parent / "shared" / "assets"))
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-4000:]}")
    return p


def _all_runs(client, exp_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def count(out: Path, uri: str, experiment: str, sweep_dir: Path) -> dict:
    """Records on disk vs runs and metrics in MLflow."""
    from mlflow.tracking import MlflowClient

    recs = [read_record(p) for p in find_records(sweep_dir)]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = _all_runs(client, exp.experiment_id) if exp else []
    jobs = {
        r.data.tags.get("qexp.record_id"): r for r in runs if r.data.tags.get("qexp.kind") == "job"
    }
    parents = [r for r in runs if r.data.tags.get("qexp.kind") == "sweep"]
    missing_runs = [r.job_dir for r in recs if r.record_id not in jobs]
    metrics_expected = sum(len(r.metrics) for r in recs)
    metrics_recorded, wrong = 0, []
    for r in recs:
        run = jobs.get(r.record_id)
        if run is None:
            continue
        for k, v in r.metrics.items():
            got = run.data.metrics.get(k)
            if got is not None and abs(got - v) <= 1e-9 * max(1.0, abs(v)):
                metrics_recorded += 1
            else:
                wrong.append((r.job_dir, k, v, got))
    ends = sorted(run.info.end_time / 1000 for run in jobs.values() if run.info.end_time)
    # one job's wall in its worker: Hydra writes <job>/.hydra/ just before calling qexp's task,
    # and the MLflow run's end time is the last thing the job does
    job_wall = []
    for r in recs:
        run = jobs.get(r.record_id)
        hydra_dir = Path(r.job_dir) / ".hydra"
        if run is not None and run.info.end_time and hydra_dir.is_dir():
            t0 = min(q.stat().st_mtime for q in hydra_dir.iterdir())
            job_wall.append(run.info.end_time / 1000 - t0)
    track_s = [
        (run.info.end_time - run.info.start_time) / 1000
        for run in jobs.values()
        if run.info.end_time and run.info.start_time
    ]
    return {
        "records": len(recs),
        "statuses": {s: sum(r.status == s for r in recs) for s in {r.status for r in recs}},
        "runs_recorded": len(jobs),
        "parents": len(parents),
        "missing_runs": missing_runs,
        "metrics_expected": metrics_expected,
        "metrics_recorded": metrics_recorded,
        "wrong_metrics": wrong[:20],
        "work_s": [float(r.info.get("work_s", 0.0)) for r in recs],
        "duration_s": [r.duration_s for r in recs],
        "track_s": track_s,
        "run_ends": ends,
        "job_wall_s": job_wall,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--server-workers", type=int, default=2, help="uvicorn workers of the server")
    p.add_argument("--out", type=Path, help="output dir (default: a new temp dir)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    a = p.parse_args()
    out = (a.out or Path(tempfile.mkdtemp(prefix="qexp-load-"))).resolve()
    experiment = "load_test"
    sweep_dir = out / "sweeps" / experiment
    print(f"output dir {out}", flush=True)
    t = time.perf_counter()
    info = server.start(out, port=0, workers=a.server_workers)
    print(f"server {info.uri} up in {time.perf_counter() - t:.1f}s", flush=True)
    try:
        t = time.perf_counter()
        _qexp(out, *CHEAP, "seed=-1", "tracking=none", timeout=900)  # warm the ONNX cache
        print(f"cache warmed by one job in {time.perf_counter() - t:.1f}s", flush=True)
        t = time.perf_counter()
        _qexp(
            out,
            "-m",
            "hydra/launcher=local_parallel",
            f"hydra.launcher.n_jobs={a.workers}",
            f"hydra.sweep.dir={sweep_dir}",
            f"seed=range(0,{a.jobs})",
            "tracking=mlflow_server",
            f"experiment_name={experiment}",
            *CHEAP,
            timeout=6 * 3600,
        )
        wall = time.perf_counter() - t
        c = count(out, info.uri, experiment, sweep_dir)
    finally:
        server.stop(out)
    left = server.group_members(info.pgid)

    n = c["records"]
    work, dur, track = (
        statistics.fmean(c[k]) if c[k] else 0.0 for k in ("work_s", "duration_s", "track_s")
    )
    per_job_wall = wall * a.workers / max(n, 1)  # worker-seconds the sweep spent per job
    # steady state: from the first `workers` jobs done to the last, start-up costs excluded
    ends = c["run_ends"]
    steady = (
        (ends[-1] - ends[a.workers - 1]) * a.workers / (len(ends) - a.workers)
        if len(ends) > 2 * a.workers
        else float("nan")
    )
    job_wall = statistics.fmean(c["job_wall_s"]) if c["job_wall_s"] else float("nan")
    result = {
        "jobs": a.jobs,
        "workers": a.workers,
        "cpus": os.cpu_count(),
        "sweep_wall_s": round(wall, 1),
        "runs_expected": n,
        "runs_recorded": c["runs_recorded"],
        "parent_runs": c["parents"],
        "metrics_expected": c["metrics_expected"],
        "metrics_recorded": c["metrics_recorded"],
        "statuses": c["statuses"],
        "work_s_mean": round(work, 3),
        "work_s_median": round(statistics.median(c["work_s"]), 3) if c["work_s"] else 0.0,
        "overhead_in_runner_s": round(dur - work, 3),
        "overhead_tracking_s": round(track, 3),
        "job_wall_s_mean": round(job_wall, 3),
        "overhead_in_job_s": round(job_wall - work, 3),
        "overhead_launcher_and_rest_s": round(per_job_wall - dur - track, 3),
        "overhead_per_job_s": round(per_job_wall - work, 3),
        "steady_worker_s_per_job": round(steady, 3),
        "steady_overhead_per_job_s": round(steady - work, 3),
        "server_processes_left": left,
    }
    print(json.dumps(result, indent=2))
    print(
        f"runs expected/recorded: {n}/{c['runs_recorded']}  "
        f"metrics expected/recorded: {c['metrics_expected']}/{c['metrics_recorded']}  "
        f"parent runs: {c['parents']}"
    )
    print(
        f"per job: work {work:.3f}s; qexp overhead {per_job_wall - work:.3f}s "
        f"(runner {dur - work:.3f}s, tracking {track:.3f}s, "
        f"launcher/dispatch/idle {per_job_wall - dur - track:.3f}s) "
        f"with {a.workers} workers on {os.cpu_count()} CPUs"
    )
    print(
        f"one job in its worker: {job_wall:.3f}s wall, of which qexp's overhead "
        f"{job_wall - work:.3f}s (Hydra job set-up {job_wall - dur - track:.3f}s, runner "
        f"{dur - work:.3f}s, tracking {track:.3f}s)"
    )
    print(
        f"steady state (start-up excluded): {steady:.3f} worker-s per job, "
        f"overhead {steady - work:.3f}s per job (incl. dispatch between jobs "
        f"{steady - job_wall:.3f}s)"
    )
    if c["missing_runs"] or c["wrong_metrics"]:
        print(f"MISSING runs: {c['missing_runs'][:10]}; bad metrics: {c['wrong_metrics'][:10]}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    ok = (
        n == a.jobs
        and c["runs_recorded"] == n
        and c["metrics_recorded"] == c["metrics_expected"]
        and c["parents"] == 1
        and not left
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
