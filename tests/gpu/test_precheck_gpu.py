"""The pre-build check against the real TensorRT: a graph TensorRT 8.6.0 refuses (the C2PSA
block of qexp's yolo11n Q/DQ export) is refused in seconds and bisected to the pair that causes
it, and the graph without that pair builds. Skips without TensorRT and a GPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from qexp.backends import tensorrt as trt_backend
from qexp.backends import trt_precheck as pc

pytestmark = pytest.mark.gpu
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "qdq" / "yolo11n_c2psa_qdq.onnx"


@pytest.fixture(scope="module")
def worker():
    import os

    b = SimpleNamespace(python=os.environ.get("TRT_PYTHON"), lazy_loading=True, jit_cache=None,
                        pythonpath=os.environ.get("TRT_PYTHONPATH", ""),
                        ld_library_path=os.environ.get("TRT_LD_LIBRARY_PATH", ""))  # fmt: skip
    p = trt_backend.probe(b.python or "", b.pythonpath, b.ld_library_path)
    if not p.get("ok"):
        pytest.skip(f"TensorRT not available: {p.get('error')}")
    return trt_backend.worker_env(b), p


def test_refused_graph_is_named_in_seconds(worker, tmp_path):
    (exe, env), probe = worker
    checker = pc.Checker(exe, env, tmp_path, [1])
    v = pc.precheck(FIXTURE, checker)
    (tmp_path / "verdict.json").write_text(json.dumps(v.to_json(), indent=1))
    print(probe["tensorrt"], v.message(), json.dumps(v.checks, indent=1))
    if probe["tensorrt"].startswith("8.6"):
        assert not v.accepted
        assert "model.10.m.0.attn.pe.conv" in v.ignore_patterns()
        assert "ignore.patterns=[" in v.message()
        assert v.checks[0]["verdict"] == "refused"
        assert v.checks[0]["s"] < 60  # the optimizer's answer, not a build
        fixed = pc.write_without(FIXTURE, v.culprits, tmp_path / "fixed.onnx")
        verdict, said = checker.verdict(fixed)
        assert verdict == "pass", said


def test_whole_build_of_the_fixed_graph(worker, tmp_path):
    (exe, env), probe = worker
    model = pc.onnx.load(str(FIXTURE))
    pe = [p for p in pc.activation_pairs(model) if p.layer == "model.10.m.0.attn.pe.conv"]
    fixed = pc.write_without(FIXTURE, pe, tmp_path / "fixed.onnx")
    script = (
        "import sys, tensorrt as trt\n"
        "from qexp.trt import build, compat\n"
        "lg = trt.Logger(trt.Logger.WARNING)\n"
        "b, n, _ = build.parse_onnx(trt, lg, sys.argv[1], strongly_typed=False)\n"
        "c = b.create_builder_config(); compat.set_flag(trt, c, 'FP16'); compat.set_flag(trt, c, 'INT8')\n"
        "compat.set_opt_level(c, 0)\n"
        "print('engine', b.build_serialized_network(n, c) is not None)\n"
    )
    out = subprocess.run([exe, "-c", script, str(fixed)], env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert "engine True" in out.stdout, out.stdout + out.stderr[-2000:]
