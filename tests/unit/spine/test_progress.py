"""Long loops: a real rich bar on a terminal (a pty here), periodic lines in log files."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

LOOP = textwrap.dedent(
    """
    import logging, sys, time
    from qexp.progress import track
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    logging.getLogger().addHandler(logging.FileHandler(sys.argv[1]))
    for _ in track(range(20), "calibrating"):
        time.sleep(0.01)
    print("done")
    """
)


def _run_in_pty(log_file) -> str:
    """Run LOOP with stdout and stderr on a pseudo-terminal; everything it drew."""
    leader, follower = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="100", TERM="xterm")
    p = subprocess.Popen(
        [sys.executable, "-c", LOOP, str(log_file)],
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    p.wait(timeout=60)
    os.close(leader)
    assert p.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_terminal_gets_a_bar_and_the_log_file_gets_lines(tmp_path):
    drawn = _run_in_pty(tmp_path / "job.log")
    assert "calibrating" in drawn and "━" in drawn, drawn  # rich's bar
    assert "calibrating: 2/20" not in drawn, "progress lines must not scroll under the bar"
    logged = (tmp_path / "job.log").read_text().splitlines()
    assert [ln.split(" (")[0] for ln in logged] == [f"calibrating: {n}/20" for n in range(2, 21, 2)]


def test_piped_output_gets_the_lines(tmp_path):
    p = subprocess.run(
        [sys.executable, "-c", LOOP, str(tmp_path / "job.log")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert p.returncode == 0, p.stderr
    assert "calibrating: 10/20" in p.stdout and "━" not in p.stdout + p.stderr
