"""`qexp server` and `python -m qexp.ui` start real mlflow servers and stop them without orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from qexp import procs
from qexp.tracking import server
from tests.conftest import ROOT
from tests.unit.reliability.conftest import processes_mentioning


def _qexp(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qexp.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_server_start_status_stop_leaves_nothing(tmp_path):
    out = tmp_path / "outputs"
    try:
        started = _qexp("server", "start", "--output-dir", str(out), "--port", "0")
        assert started.returncode == 0, started.stderr
        info = server.read_state(out)
        assert info is not None and info.host == "127.0.0.1"
        assert info.uri in started.stdout
        assert server.healthy(info.uri)
        members = server.group_members(info.pgid)
        assert len(members) >= 2, "expected the mlflow CLI and its uvicorn worker(s) in the group"
        assert (out / "mlflow.db").exists()
        st = _qexp("server", "status", "--output-dir", str(out))
        assert st.returncode == 0 and "running at" in st.stdout
    finally:
        stopped = _qexp("server", "stop", "--output-dir", str(out))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not server.group_members(info.pgid)
    assert not processes_mentioning(str(out))
    assert not server.healthy(info.uri, timeout=1)
    assert not (out / server.STATE_FILE).exists()
    st = _qexp("server", "status", "--output-dir", str(out))
    assert st.returncode == 3 and "not running" in st.stdout


def test_start_again_reuses_the_running_server(mlflow_server):
    info, out = mlflow_server
    assert server.start(out) == info


def test_busy_port_is_a_clear_error(mlflow_server, tmp_path):
    info, _ = mlflow_server
    with pytest.raises(RuntimeError, match=f"port {info.port} .* already in use"):
        server.start(tmp_path / "other", port=info.port)
    assert not (tmp_path / "other" / server.STATE_FILE).exists()


def test_stale_state_file_is_dropped(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    dead.wait()
    stale = server.ServerInfo(dead.pid, dead.pid, "127.0.0.1", 1, "sqlite:///x", "a", "l", 0.0)
    (out / server.STATE_FILE).write_text(__import__("json").dumps(stale.__dict__))
    assert server.status(out) is None
    assert not (out / server.STATE_FILE).exists()


def _start_ui(python: str, port: int, out) -> tuple[subprocess.Popen, str]:
    """`python -m qexp.ui` from an interpreter at a long path; (process, its output so far)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    ui = subprocess.Popen(
        [python, "-m", "qexp.ui", "--port", str(port), "--output-dir", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = ui.stdout.readline()
        lines.append(line)
        if "MLflow UI at" in line or (not line and ui.poll() is not None):
            break
    return ui, "".join(lines)


def _assert_server_gone(port: int, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while processes_mentioning(f"--port {port}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_mentioning(f"--port {port}")
    assert not server.healthy(f"http://127.0.0.1:{port}", timeout=1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ui_stops_its_whole_group(tmp_path, sig, long_path_python):
    out = tmp_path / "outputs"
    port = server.free_port()
    ui, text = _start_ui(long_path_python, port, out)
    try:
        assert f"http://127.0.0.1:{port}" in text, text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
        # `--port N` comes after the 120+ character interpreter path on the server's command line
        servers = processes_mentioning(f"--port {port}")
        assert servers, "the UI's mlflow server should be running"
        assert any(long_path_python in s for s in servers)
        ui.send_signal(sig)
        assert ui.wait(timeout=60) == 0
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()
    _assert_server_gone(port)


def test_ui_killed_hard_leaves_no_server(tmp_path, long_path_python):
    """SIGKILL runs no cleanup in the UI: its guard must end the server group by itself."""
    out = tmp_path / "outputs"
    port = server.free_port()
    ui, text = _start_ui(long_path_python, port, out)
    try:
        assert f"http://127.0.0.1:{port}" in text, text
        servers = [p for p in procs.processes_mentioning(f"--port {port}") if p.pid != ui.pid]
        assert servers, "the UI's mlflow server should be running"
        pgid = servers[0].pgid
        assert pgid != os.getpgid(ui.pid), "the server runs in a group of its own"
        assert len(server.group_members(pgid)) >= 2, "the guard and the mlflow server expected"
        ui.kill()
        ui.wait(timeout=30)
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()
    _assert_server_gone(port)
    deadline = time.monotonic() + 10
    while server.group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server.group_members(pgid)
