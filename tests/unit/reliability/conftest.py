"""A real `mlflow server` on 127.0.0.1 for the reliability tests, always stopped afterwards."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from qexp import server


def processes_mentioning(text: str) -> list[str]:
    """`ps` lines (other than zombies) whose command line contains ``text``."""
    out = subprocess.run(
        ["ps", "-eo", "pid,pgid,stat,args"], capture_output=True, text=True, check=True
    ).stdout
    return [
        line
        for line in out.splitlines()[1:]
        if text in line and "Z" not in line.split()[2] and str(os.getpid()) != line.split()[0]
    ]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """(ServerInfo, output_dir) of a server started by qexp.server; stopped, with a ps check."""
    out = tmp_path_factory.mktemp("srv") / "outputs"
    info = server.start(out, port=0, workers=2)
    try:
        yield info, out
    finally:
        server.stop(out)
        left = processes_mentioning(str(out))
        assert not left, f"mlflow server processes left behind: {left}"


def ps_args(pid: int) -> str:
    p = Path(f"/proc/{pid}/cmdline")
    return p.read_bytes().replace(b"\0", b" ").decode() if p.exists() else ""
