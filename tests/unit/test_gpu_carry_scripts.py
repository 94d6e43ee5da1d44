"""The engines and records a GPU lease brings home, and carries out to the next: the real
scripts (scripts/gpu/collect.sh on the GPU side, home.sh here) on a real output-dir layout."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT


def _bash(script: str, *args: str, cwd: Path, **env: str) -> str:
    p = subprocess.run(["bash", str(ROOT / "scripts" / "gpu" / script), *args], cwd=cwd,
                       env={**os.environ, **env}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def _engine(out: Path, key: str, size: int) -> None:
    d = out / "cache" / "trt_engine" / key
    d.mkdir(parents=True)
    (d / "engine.plan").write_bytes(os.urandom(size))
    (d / "engine.plan.json").write_text(json.dumps({"stats": {"build_s": 1.0}}))


def test_engines_come_home_once_and_go_out_with_the_records(tmp_path):
    out, stage, sent = tmp_path / "qexp-out", tmp_path / "stage", tmp_path / "OUT"
    job = out / "sweeps" / "s" / "t" / "0"
    job.mkdir(parents=True)
    (job / "result.json").write_text("{}")
    (out / "index").mkdir()
    (out / "index" / "abc.txt").write_text(str(job))
    for i, mib in enumerate((9, 9, 2)):
        _engine(out, f"k{i}", mib << 20)
    half = out / "cache" / "trt_engine" / "k3"  # still being written: no .json yet
    half.mkdir()
    (half / "engine.plan").write_bytes(b"x")
    for d in (stage, sent):
        d.mkdir()
    env = {"QEXP_OUT": str(out), "STAGE": str(stage), "OUT": str(sent)}
    said = _bash("collect.sh", cwd=tmp_path, **env)
    tars = sorted(sent.glob("engines-*.tar"))
    assert len(tars) == 2 and all(t.stat().st_size <= 15 << 20 for t in tars), said
    assert "3 sent in all" in said
    # a second call brings no engine twice
    for t in tars:
        t.unlink()
    _bash("collect.sh", cwd=tmp_path, **env)
    assert not list(sent.glob("engines-*.tar"))
    # home: records for ingest, and records + engines in the carry dir for the next lease
    home, first = tmp_path / "home", tmp_path / "first"
    home.mkdir()
    first.mkdir()
    (stage / "engines.sent").unlink()  # as on a fresh machine: every engine comes again
    _bash("collect.sh", cwd=tmp_path, **{**env, "OUT": str(first)})
    carry_root = tmp_path / "cache"
    said = _bash("home.sh", str(first), cwd=home, QEXP_STAGE_CACHE=str(carry_root))
    carry = carry_root / "carry"
    assert sorted(p.parent.name for p in carry.rglob("engine.plan")) == ["k0", "k1", "k2"]
    assert (carry / "index" / "abc.txt").read_text() == str(job)
    assert (home / "outputs" / "gpu" / "sweeps" / "s" / "t" / "0" / "result.json").exists()
    assert "3 engines" in said
