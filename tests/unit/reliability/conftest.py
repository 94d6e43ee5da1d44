"""A real `mlflow server` on 127.0.0.1 for the reliability tests, always stopped afterwards."""

from __future__ import annotations

import sysconfig
import venv

import pytest

from qexp import procs
from qexp.tracking import server


def processes_mentioning(text: str) -> list[str]:
    """Live processes (other than this one) whose whole command line contains ``text``.

    Whole: qexp.procs reads /proc, never ``ps`` at a terminal's width, so a match does not
    depend on how long the clone's path makes the command lines."""
    return [f"{p.pid} {p.pgid} {p.state} {p.args}" for p in procs.processes_mentioning(text)]


@pytest.fixture(scope="session")
def long_path_python(tmp_path_factory) -> str:
    """An interpreter whose own path is over 120 characters, with this checkout's packages.

    A clone at a long path (CI's folder is not ours to choose) puts a long venv path first on
    every command line qexp starts; tests that look processes up must still find them.
    """
    deep = tmp_path_factory.mktemp("clone")
    for part in ("a-clone-folder-whose-name-is-long-" * 2, "nested-" * 8, "main"):
        deep = deep / part
    venv.create(deep / ".venv", with_pip=False, symlinks=True)
    py = deep / ".venv" / "bin" / "python"
    purelib = sysconfig.get_paths()["purelib"]
    site = next((deep / ".venv" / "lib").glob("python3*/site-packages"))
    # this interpreter's packages (and their .pth hooks) after the repo on PYTHONPATH
    (site / "qexp_test_parent.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
    assert len(str(py)) > 120  # past 80 columns on its own
    return str(py)


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
