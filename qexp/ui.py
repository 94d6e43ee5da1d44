"""`python -m qexp.ui --port N` (`make ui`): the MLflow UI over outputs/mlflow.db on 127.0.0.1.

The UI is an ``mlflow server`` in a process group of its own. Ctrl-C, SIGTERM, or this process
exiting ends that whole group, so no uvicorn worker outlives the command; a guard
(:mod:`qexp.guard`) ends it too when this process is killed hard (SIGKILL) and cleans up nothing.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
from pathlib import Path

from qexp.server import LOOPBACK, server_command, spawn_group, stop_group, wait_healthy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qexp.ui", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default=LOOPBACK)
    p.add_argument(
        "--output-dir",
        type=Path,
        default=Path(os.environ.get("QEXP_OUTPUT_DIR", "outputs")),
        help="the dir holding mlflow.db (default: outputs)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the UI")
    a = p.parse_args(argv)
    out = a.output_dir.resolve()
    db = out / "mlflow.db"
    if not db.exists():
        print(f"note: {db} does not exist yet; the UI starts empty (run a job first)")
    out.mkdir(parents=True, exist_ok=True)
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
        wait_healthy(f"http://{a.host}:{a.port}", proc, log_path, a.timeout)
        print(
            f"MLflow UI at http://{a.host}:{a.port} (Ctrl-C stops it; log {log_path})", flush=True
        )
        proc.wait()
        return proc.returncode or 0
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
