"""`qexp server start|stop|status`: one `mlflow server` (sqlite) that parallel jobs log to.

Parallel writers must not share one sqlite file directly (docs/architecture.md), so a sweep
with a parallel launcher logs through ``tracking=mlflow_server`` to this server. It listens on
127.0.0.1 unless told otherwise, keeps its runs in the same ``outputs/mlflow.db`` that ``make
ui`` and ``qexp report`` read, and runs in a process group of its own: ``stop`` ends the whole
group (uvicorn workers included), so nothing is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from qexp.procs import group_members

STATE_FILE = "mlflow-server.json"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServerInfo:
    """What ``start`` wrote to ``<output_dir>/mlflow-server.json`` so others can find it."""

    pid: int
    pgid: int
    host: str
    port: int
    backend_store_uri: str
    artifacts: str
    log: str
    started_at: float

    @property
    def uri(self) -> str:
        host = socket.getfqdn() if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def state_path(output_dir: str | os.PathLike[str]) -> Path:
    return Path(output_dir).resolve() / STATE_FILE


def read_state(output_dir: str | os.PathLike[str]) -> ServerInfo | None:
    p = state_path(output_dir)
    if not p.exists():
        return None
    try:
        return ServerInfo(**json.loads(p.read_text()))
    except (ValueError, TypeError) as e:
        raise ValueError(f"cannot read server state {p}: {e}; delete it if no server runs") from e


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((LOOPBACK if host in ("0.0.0.0", "::") else host, port)) == 0


def healthy(uri: str, timeout: float = 2.0) -> bool:
    """True when ``<uri>/health`` answers 200 within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def server_command(
    host: str, port: int, backend_store_uri: str, artifacts: Path, workers: int
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        str(artifacts),
        "--workers",
        str(workers),
    ]


def spawn_group(cmd: list[str], log_path: Path, guard: bool = False) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new process group (so the group can be ended whole).

    ``guard=True``: the group dies with this process, however it ends (even SIGKILL): the
    leader is :mod:`qexp.tracking.guard`, watching a pipe only this process holds open.
    """
    env = dict(os.environ)
    # mlflow >= 3.5 starts job-runner processes unless told not to; we never use them
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "qexp.tracking.guard", *cmd] if guard else cmd,
            stdin=subprocess.PIPE if guard else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def stop_group(pgid: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> bool:
    """SIGTERM the group, SIGKILL what is left after ``timeout``; True when none is left."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()  # reap our own child so it does not linger as a zombie
            if not group_members(pgid):
                return True
            time.sleep(0.1)
    if proc is not None:
        proc.poll()
    return not group_members(pgid)


def wait_healthy(uri: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(uri):
            return
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with code {proc.returncode}; log {log_path}:\n"
                + _tail(log_path)
            )
        time.sleep(0.3)
    stop_group(proc.pid, proc=proc)
    raise TimeoutError(f"mlflow server not healthy at {uri} after {timeout:.0f}s; log {log_path}")


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def start(
    output_dir: str | os.PathLike[str] = "outputs",
    host: str = LOOPBACK,
    port: int = 5000,
    workers: int = 2,
    backend_store_uri: str | None = None,
    timeout: float = 120.0,
) -> ServerInfo:
    """Start the server (or return the healthy one already started for ``output_dir``)."""
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    running = status(out)
    if running is not None:
        return running
    port = free_port(LOOPBACK if host in ("0.0.0.0", "::") else host) if port == 0 else port
    if port_in_use(host, port):
        raise RuntimeError(
            f"port {port} on {host} is already in use; pick another with --port "
            "(or stop the other server)"
        )
    backend = backend_store_uri or f"sqlite:///{out / 'mlflow.db'}"
    artifacts = out / "mlartifacts"
    log_path = out / "mlflow-server.log"
    proc = spawn_group(server_command(host, port, backend, artifacts, workers), log_path)
    info = ServerInfo(
        pid=proc.pid,
        pgid=proc.pid,
        host=host,
        port=port,
        backend_store_uri=backend,
        artifacts=str(artifacts),
        log=str(log_path),
        started_at=time.time(),
    )
    wait_healthy(
        f"http://{LOOPBACK if host in ('0.0.0.0', '::') else host}:{port}", proc, log_path, timeout
    )
    from qexp.record import atomic_write_text

    atomic_write_text(state_path(out), json.dumps(asdict(info), indent=2))
    return info


def status(output_dir: str | os.PathLike[str] = "outputs") -> ServerInfo | None:
    """The server started for ``output_dir`` if it is alive and healthy; stale state is removed."""
    info = read_state(output_dir)
    if info is None:
        return None
    local = f"http://{LOOPBACK if info.host in ('0.0.0.0', '::') else info.host}:{info.port}"
    if group_members(info.pgid) and healthy(local):
        return info
    if not group_members(info.pgid):
        state_path(output_dir).unlink(missing_ok=True)
    return None


def stop(output_dir: str | os.PathLike[str] = "outputs", timeout: float = 15.0) -> bool:
    """Stop the server of ``output_dir`` and every process of its group; False if none ran."""
    info = read_state(output_dir)
    if info is None:
        return False
    if not stop_group(info.pgid, timeout):
        left = group_members(info.pgid)
        raise RuntimeError(f"processes {left} of the mlflow server group {info.pgid} survived")
    state_path(output_dir).unlink(missing_ok=True)
    return True


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="qexp server",
        description="An mlflow server (sqlite under the output dir) for parallel jobs.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("start", "start it"), ("stop", "stop it"), ("status", "is it up?")):
        s = sub.add_parser(name, help=help_)
        s.add_argument(
            "--output-dir",
            default=os.environ.get("QEXP_OUTPUT_DIR", "outputs"),
            help="where mlflow.db, mlartifacts/ and the server's state file live",
        )
        if name == "start":
            s.add_argument("--port", type=int, default=5000, help="0 picks a free port")
            s.add_argument(
                "--host",
                default=LOOPBACK,
                help="bind address (default 127.0.0.1; Slurm nodes need the login node's address)",
            )
            s.add_argument("--workers", type=int, default=2)
            s.add_argument("--backend-store-uri", help="default: sqlite:///<output-dir>/mlflow.db")
            s.add_argument("--timeout", type=float, default=120.0)
    a = p.parse_args(argv)
    if a.cmd == "start":
        info = start(a.output_dir, a.host, a.port, a.workers, a.backend_store_uri, a.timeout)
        print(f"mlflow server at {info.uri} (pid {info.pid}, log {info.log})")
        print(f"jobs log to it with: tracking=mlflow_server (or tracking.uri={info.uri})")
        return 0
    if a.cmd == "stop":
        print("stopped" if stop(a.output_dir) else f"no server recorded in {a.output_dir}")
        return 0
    up = status(a.output_dir)
    print(f"running at {up.uri} (pid {up.pid})" if up else "not running")
    return 0 if up else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
