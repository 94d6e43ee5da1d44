"""Process lookups that never depend on a terminal's width.

``ps -eo args`` cuts command lines at the terminal's width (80 columns when its output is a
pipe), so a match on text late in a long command line (``--port N`` after a deep venv path)
depends on where the repository was cloned. These read the whole command line: /proc on Linux,
``ps ww`` (unlimited width) elsewhere.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    pid: int
    pgid: int
    state: str  # one letter: R, S, D, Z (zombie), ...
    args: str  # the whole command line, arguments separated by spaces


def _from_proc() -> list[Proc]:
    out = []
    for d in _PROC.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            raw = (d / "cmdline").read_bytes()
        except OSError:  # exited while we looked
            continue
        # fields after the ")" that closes the command name: state ppid pgrp ...
        fields = stat.rsplit(")", 1)[1].split()
        args = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        out.append(Proc(int(d.name), int(fields[2]), fields[0], args))
    return out


def _from_ps() -> list[Proc]:
    # "ww": unlimited width, whatever COLUMNS or the terminal say
    text = subprocess.run(
        ["ps", "ww", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    out = []
    for line in text.splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3:
            pid, pgid, stat = parts[:3]
            out.append(Proc(int(pid), int(pgid), stat[0], parts[3] if len(parts) > 3 else ""))
    return out


def processes() -> list[Proc]:
    """Every process this user can see, zombies included, with whole command lines."""
    return _from_proc() if _PROC.is_dir() else _from_ps()


def processes_mentioning(text: str) -> list[Proc]:
    """Live (non-zombie) processes other than this one whose command line contains ``text``."""
    me = os.getpid()
    return [p for p in processes() if text in p.args and p.state != "Z" and p.pid != me]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    return [p.pid for p in processes() if p.pgid == pgid and p.state != "Z"]
