"""`qexp ui [--port N] [--output-dir DIR]`: the MLflow UI over ./outputs/mlflow.db on 127.0.0.1.

Run it from the directory the sweeps ran in (their outputs are in ./outputs there, or in
``$QEXP_OUTPUT_DIR``), or name the outputs with ``--output-dir``; ``make ui`` runs it in the
repository. Without ``--output-dir`` and no store there, it says where it looked and stops.

The UI is an ``mlflow server`` in a process group of its own. Ctrl-C, SIGTERM, or this process
exiting ends that whole group, so no uvicorn worker outlives the command; a guard
(:mod:`qexp.tracking.guard`) ends it too when this process is killed hard (SIGKILL) and cleans
up nothing. It prints one link per qexp experiment: its runs in MLflow's training view, on the
"qexp: jobs by mAP" view (qexp.tracking.mlflow_view says why a bare experiment link opens
MLflow's GenAI pages). ``python -m qexp.ui`` (a thin entry point) runs :func:`main`.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
from pathlib import Path

from qexp.tracking.mlflow_view import ensure_view, hide_empty_default, runs_url
from qexp.tracking.server import LOOPBACK, server_command, spawn_group, stop_group, wait_healthy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="qexp ui", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default=LOOPBACK)
    p.add_argument(
        "--output-dir",
        type=Path,
        help="the outputs dir holding mlflow.db (default: $QEXP_OUTPUT_DIR, else ./outputs: "
        "where `qexp` run from this directory writes); a new one starts the UI empty",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the UI")
    a = p.parse_args(argv)
    out = (a.output_dir or Path(os.environ.get("QEXP_OUTPUT_DIR") or "outputs")).resolve()
    db = out / "mlflow.db"
    if not db.exists() and a.output_dir is None:
        print(
            f"qexp ui: no MLflow store at {db}: run it from the directory your sweeps ran in "
            "(their outputs/ is there), or pass --output-dir DIR",
            file=sys.stderr,
        )
        return 2
    if not db.exists():
        print(f"note: {db} does not exist yet; the UI starts empty (run a job first)")
    out.mkdir(parents=True, exist_ok=True)
    experiments = prepare_store(f"sqlite:///{db}") if db.exists() else []
    log_path = out / "mlflow-ui.log"
    cmd = server_command(a.host, a.port, f"sqlite:///{db}", out / "mlartifacts", workers=1)
    proc = spawn_group(cmd, log_path, guard=True)  # even a SIGKILL of the UI ends the server
    stopped = False

    def shutdown(*_: object) -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            stop_group(proc.pid, proc=proc)

    atexit.register(shutdown)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(0))  # SystemExit runs the finally below
    try:
        base = f"http://{a.host}:{a.port}"
        wait_healthy(base, proc, log_path, a.timeout)
        links = "".join(f"\n  {name}: {runs_url(base, eid)}" for eid, name in experiments)
        print(f"MLflow UI at {base} (Ctrl-C stops it; log {log_path}){links}", flush=True)
        proc.wait()
        return proc.returncode or 0
    finally:
        shutdown()


def prepare_store(uri: str) -> list[tuple[str, str]]:
    """(id, name) of the qexp experiments in the store, each given the qexp view; MLflow's
    empty Default hidden. Done on the sqlite file before the server opens it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    hide_empty_default(client)
    found = []
    for exp in client.search_experiments():
        if client.search_runs([exp.experiment_id], "tags.`qexp.kind` = 'job'", max_results=1):
            ensure_view(client, exp)
            found.append((exp.experiment_id, exp.name))
    return found


if __name__ == "__main__":
    sys.exit(main())
