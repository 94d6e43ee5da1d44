"""Run the real `qexp` CLI in a subprocess against isolated output dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ASSETS, ROOT


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the whole session: exported ONNX and calibration stats are reused."""
    return tmp_path_factory.mktemp("qexp-cache")


@pytest.fixture
def qexp(tmp_path, shared_cache):
    """qexp(*args) -> CompletedProcess; outputs under tmp_path/outputs."""
    out = tmp_path / "outputs"

    def _run(*args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
        env = dict(os.environ, QEXP_ASSETS=str(ASSETS), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "qexp.cli", *args]
        if args and args[0] not in ("report", "ingest", "server"):
            cmd += [f"paths.output_dir={out}", f"paths.cache_dir={shared_cache}"]
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    _run.out = out  # type: ignore[attr-defined]
    return _run
