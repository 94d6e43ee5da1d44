"""Every cache kind keeps the one entry protocol of qexp.cache: a damaged or partial entry is
rebuilt, parallel builders (real processes) build once, and an entry an older qexp wrote is
adopted instead of recomputed. The ONNX export cache is covered by test_cache.py and
tests/unit/backends/test_export_cache.py, the sensitivity analysis by the assets test below."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import numpy as np
import pytest

from qexp import cache
from tests.conftest import ROOT
from tests.unit.reliability.cache_builder import KINDS

# the file whose damage each kind must notice
DAMAGE = {
    "calib": "stats.npz",
    "model": "state.pt",
    "eval_images": "images.npy",
    "calib_images": "calib_0000.npy",
}


def _flip_byte(path):
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "missing"])
def test_a_damaged_entry_of_each_kind_is_rebuilt(tmp_path, caplog, kind, damage):
    entry, log = tmp_path / kind, tmp_path / "builds.log"
    first = KINDS[kind](entry, log)
    assert cache.problem(entry) is None
    assert KINDS[kind](entry, log) == first and log.read_text().count("built") == 1
    victim = entry / DAMAGE[kind]
    if damage == "flip_byte":
        _flip_byte(victim)
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:100])
    else:
        victim.unlink()
    with caplog.at_level(logging.WARNING, logger="qexp"):
        again = KINDS[kind](entry, log)
    assert log.read_text().count("built") == 2, "the damaged entry was reused"
    assert "rebuilding" in caplog.text
    assert again == first and cache.problem(entry) is None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_parallel_builders_of_each_kind_build_once(tmp_path, kind):
    entry, log, go = tmp_path / kind, tmp_path / "builds.log", tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    cmd = [sys.executable, "-m", "tests.unit.reliability.cache_builder", kind, str(entry)]
    procs = [
        subprocess.Popen([*cmd, str(log), str(r), str(go)], cwd=ROOT, stdout=subprocess.PIPE)
        for r in ready
    ]
    try:
        deadline = time.monotonic() + 240
        while not all(r.exists() for r in ready):
            assert all(p.poll() is None for p in procs), "a builder died before the start"
            assert time.monotonic() < deadline, "the builders did not start"
            time.sleep(0.05)
        go.touch()
        outs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0] and all(b"ok" in o for o in outs)
    assert log.read_text().count("built") == 1
    assert cache.problem(entry) is None
    assert not [p for p in entry.iterdir() if p.name.startswith(".build-")]


def test_a_calibration_entry_of_the_older_layout_is_adopted(tmp_path):
    """Before the shared protocol, calibration wrote its own manifest (version, names, sha256
    of stats.npz): such an entry is hashed into a manifest once, not recalibrated."""
    entry, log = tmp_path / "calib", tmp_path / "builds.log"
    first = KINDS["calib"](entry, log)
    meta = cache.meta(entry)
    old = {**meta, "sha256": cache.file_hash(entry / "stats.npz")}
    (entry / cache.MANIFEST).write_text(json.dumps(old))
    assert KINDS["calib"](entry, log) == first
    assert log.read_text().count("built") == 1
    assert cache.problem(entry) is None and cache.meta(entry)["adopted"] is True
    # the older layout with a damaged array file is not adopted
    (entry / cache.MANIFEST).write_text(json.dumps(old))
    _flip_byte(entry / "stats.npz")
    assert KINDS["calib"](entry, log) == first
    assert log.read_text().count("built") == 2


def test_a_model_entry_of_the_older_layout_is_adopted(tmp_path):
    """Before the shared protocol, a trained-weights entry was state.pt + meta.json (last)."""
    entry, log = tmp_path / "model", tmp_path / "builds.log"
    first = KINDS["model"](entry, log)
    (entry / cache.MANIFEST).unlink()
    assert KINDS["model"](entry, log) == first
    assert log.read_text().count("built") == 1
    # without its meta.json the entry was never complete: trained again
    (entry / cache.MANIFEST).unlink()
    (entry / "meta.json").unlink()
    assert KINDS["model"](entry, log) == first
    assert log.read_text().count("built") == 2


def test_a_failed_build_does_not_hold_the_entry(tmp_path):
    """A claim whose build raised is released by the runner at the job's end: another
    process then builds the entry instead of waiting for this one to exit."""
    from qexp.quant import model_cache

    entry = tmp_path / "model"
    assert model_cache.load(entry) is None  # claimed; the "training" then fails
    assert cache.release_all() == [str(entry.resolve())]
    code = (
        "import sys, torch; from qexp.quant import model_cache as m; "
        "assert m.load(sys.argv[1]) is None; m.save(sys.argv[1], {'w': torch.ones(2)}, {})"
    )
    subprocess.run([sys.executable, "-c", code, str(entry)], cwd=ROOT, check=True, timeout=120)
    state, _ = model_cache.load(entry)
    np.testing.assert_array_equal(state["w"].numpy(), np.ones(2))


@pytest.mark.assets
def test_a_damaged_sensitivity_entry_is_rebuilt(tmp_path, compose, assets, caplog):
    from qexp.data import load_eval_data
    from qexp.job import Job
    from qexp.quant.sensitivity import cached_analysis
    from qexp.registry import MODEL_FAMILIES

    cfg = compose(
        ["quantizer=ptq", "ignore=sensitivity_topk", "data=tiny", "model.imgsz=64",
         "data.calib.num=2", "data.max_images=2"]
    )  # fmt: skip
    job = Job(cfg=cfg, dir=tmp_path / "job", cache_dir=tmp_path / "cache")
    det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    data = load_eval_data(cfg.data, job)
    first, directory = cached_analysis(job, det, data, 2)
    entry = tmp_path / "cache" / "sensitivity"
    (entry,) = entry.iterdir()
    assert str(entry) == directory and cache.problem(entry) is None
    again, _ = cached_analysis(job, det, data, 2)
    assert again["rows"] == json.loads(json.dumps(first["rows"]))  # from the cache
    csv = entry / "sensitivity.csv"
    csv.write_text(csv.read_text()[:50])  # a table cut short
    with caplog.at_level(logging.WARNING, logger="qexp"):
        rebuilt, _ = cached_analysis(job, det, data, 2)
    assert "rebuilding" in caplog.text and cache.problem(entry) is None
    assert rebuilt["rows"] == first["rows"]
