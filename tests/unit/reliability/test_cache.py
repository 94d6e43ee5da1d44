"""Cache entries with a sha256 manifest: partial, truncated and corrupted entries are rebuilt."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from qexp import cache
from tests.conftest import ROOT


def _write_onnx(path: Path, seed: int = 0) -> Path:
    """A small real model: Conv(3->8, 3x3) + Relu, random weights."""
    w = np.random.default_rng(seed).standard_normal((8, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class Builder:
    """Exports the model into the temp dir it is given; counts how often it ran."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, tmp: Path) -> list[str]:
        self.calls += 1
        _write_onnx(tmp / "model.onnx")
        return ["model.onnx"]


def _run_onnx(path: Path) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": np.ones((1, 3, 16, 16), np.float32)})[0]


def test_whole_entry_is_reused(tmp_path):
    entry, build = tmp_path / "onnx" / "k1", Builder()
    assert cache.cached(entry, build) == ["model.onnx"]
    assert cache.cached(entry, build) == ["model.onnx"]
    assert build.calls == 1
    assert cache.problem(entry) is None
    assert _run_onnx(entry / "model.onnx").shape == (1, 8, 16, 16)


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "delete", "no_manifest"])
def test_damaged_entry_is_detected_and_rebuilt(tmp_path, caplog, damage):
    entry, build = tmp_path / "onnx" / "k1", Builder()
    cache.cached(entry, build)
    f = entry / "model.onnx"
    good = _run_onnx(f)
    data = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        f.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif damage == "delete":
        f.unlink()
    else:
        (entry / cache.MANIFEST).unlink()
    why = cache.problem(entry)
    expected = {
        "truncate": "truncated",
        "flip_byte": "sha256",
        "delete": "missing",
        "no_manifest": "no manifest",
    }[damage]
    assert why and expected in why
    with pytest.raises(cache.CacheCorrupt, match="model.onnx|manifest"):
        cache.verify(entry)
    with caplog.at_level(logging.WARNING, logger="qexp"):
        cache.cached(entry, build)
    assert build.calls == 2
    assert "rebuilding" in caplog.text and expected in caplog.text
    assert cache.problem(entry) is None
    np.testing.assert_array_equal(_run_onnx(f), good)


_KILLED_BUILDER = """
import sys, time
from pathlib import Path
from qexp import cache

def build(tmp):
    with open(tmp / "model.onnx", "wb") as f:   # half a file, then the job dies
        f.write(b"\\x08\\x08" * 1000)
        f.flush()
        Path(sys.argv[2]).touch()
        time.sleep(600)
    return ["model.onnx"]

cache.cached(Path(sys.argv[1]), build)
"""


def test_build_killed_midway_leaves_nothing_reusable(tmp_path):
    entry, started = tmp_path / "onnx" / "k1", tmp_path / "started"
    p = subprocess.Popen(
        [sys.executable, "-c", _KILLED_BUILDER, str(entry), str(started)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert p.poll() is None and time.monotonic() < deadline, "builder did not start"
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGKILL
    assert "no manifest" in cache.problem(entry)
    build = Builder()
    cache.cached(entry, build)  # the dead builder's lock went with it: no wait, a rebuild
    assert build.calls == 1
    assert cache.problem(entry) is None
    assert not [d for d in entry.iterdir() if d.name.startswith(".build-")]


_PARALLEL_BUILDER = """
import sys, time
from pathlib import Path
from qexp import cache

entry, log, go = map(Path, sys.argv[1:4])
def build(tmp):
    with open(log, "a") as f:
        f.write("built\\n")
    time.sleep(1.0)          # long enough for the other process to arrive and wait
    (tmp / "a.bin").write_bytes(b"x" * 1000)
    return ["a.bin"]

while not go.exists():
    time.sleep(0.01)
print(cache.cached(entry, build))
"""


def test_parallel_jobs_build_an_entry_once(tmp_path):
    entry, log, go = tmp_path / "e", tmp_path / "builds.log", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PARALLEL_BUILDER, str(entry), str(log), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    time.sleep(0.5)
    go.touch()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert log.read_text().count("built") == 1
    assert all("a.bin" in o for o in outs)


def test_malformed_onnx_is_a_clear_error(tmp_path):
    good = _write_onnx(tmp_path / "good.onnx")
    cache.check_onnx(good)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:100])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not an onnx model\n" * 10)
    for bad in (truncated, garbage):
        with pytest.raises(ValueError, match=f"malformed ONNX file {bad}"):
            cache.check_onnx(bad)
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        cache.check_onnx(tmp_path / "nope.onnx")
