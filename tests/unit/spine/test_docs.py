"""The `qexp` command lines the README and docs/ show pass qexp's own checks (known keys and
groups, YAML that parses), so a renamed key cannot leave a documented command behind."""

from __future__ import annotations

import re
import shlex

import pytest

from qexp.preflight import plan
from tests.conftest import ROOT

SUBCOMMANDS = ("report", "ingest", "server", "help")


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", doc.read_text(), re.S):
            text = re.sub(r"\\\n\s*", " ", block)  # join continued lines
            for line in text.splitlines():
                line = re.split(r"\s#", line)[0].strip()
                if line == "qexp" or line.startswith("qexp "):
                    argv = shlex.split(line)[1:]
                    if not argv or argv[0] not in SUBCOMMANDS:
                        found.append((doc.relative_to(ROOT).as_posix(), argv))
    return found


COMMANDS = documented_commands()


def test_docs_show_commands():
    assert len(COMMANDS) > 10


@pytest.mark.parametrize(
    ("doc", "argv"), COMMANDS, ids=[f"{d}:{shlex.join(a)}" for d, a in COMMANDS]
)
def test_documented_command_passes_preflight(doc, argv):
    plan(argv)  # raises UsageError naming the unknown key
