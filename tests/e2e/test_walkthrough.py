"""README's "Your first sweep" runs as written: its commands, from another directory and from
the repository root (a copy of the tree made of links, so the clone's own outputs/ stay
untouched)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from qexp.record import FINISHED, SKIPPED, find_records, read_record
from tests.conftest import ROOT

pytestmark = pytest.mark.assets


def walkthrough() -> list[list[str]]:
    """The commands of the README section's bash block."""
    section = (ROOT / "README.md").read_text().split("## Your first sweep", 1)[1]
    block = section.split("\n## ", 1)[0].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(ln) for ln in block.splitlines() if ln.strip()]


def _root_copy(tmp_path: Path) -> Path:
    """The repository's files, linked into a fresh folder: the root as a fresh clone has it."""
    root = tmp_path / "clone"
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("outputs", ".git", ".venv", ".qexp-home") and not entry.name.endswith(
            "_cache"
        ):
            (root / entry.name).symlink_to(entry)
    return root


@pytest.mark.parametrize(
    "where", ["another-directory", pytest.param("repo-root", marks=pytest.mark.slow)]
)
def test_first_sweep_runs_as_written(tmp_path, where):
    commands = walkthrough()
    assert [c[0] for c in commands] == ["qexp"] * len(commands), "the block holds qexp commands"
    cwd = _root_copy(tmp_path) if where == "repo-root" else tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("QEXP_OUTPUT_DIR", None)
    said = []
    for argv in commands:
        p = subprocess.run(
            [sys.executable, "-m", "qexp.cli", *argv[1:]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert p.returncode == 0, f"{shlex.join(argv)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        said.append(p.stdout)
    help_page, sweep, report = said
    assert "qexp report" in help_page and "observer" in help_page
    assert "4 jobs: 3 FINISHED, 0 FAILED, 1 SKIPPED" in sweep
    recs = [read_record(r) for r in find_records(cwd / "outputs" / "sweeps" / "first_sweep")]
    assert sorted(r.status for r in recs) == [FINISHED] * 3 + [SKIPPED]
    assert all(0 < r.metrics["map50_95"] < 1 for r in recs if r.status == FINISHED)
    for row in ("none", "ptq", "entropy", "map50_95"):
        assert row in report
