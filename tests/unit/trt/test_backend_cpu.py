"""backend=tensorrt on a machine without TensorRT: SKIPPED with the reason, failures as errors
that carry the worker's message, never a traceback out of the sweep."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from qexp.backends import tensorrt as trt_backend
from qexp.config.validate import validate
from qexp.contracts import Output
from qexp.job import Job
from qexp.record import SKIPPED
from qexp.registry import QUANTIZERS
from qexp.runner import JobSpec, combination_reason, run_job
from qexp.trt import protocol
from tests.conftest import ROOT

HAS_TRT_HERE = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture
def no_trt_env(monkeypatch):
    for var in ("TRT_PYTHON", "TRT_PYTHONPATH", "TRT_LD_LIBRARY_PATH"):
        monkeypatch.delenv(var, raising=False)
    trt_backend.probe.cache_clear()
    yield
    trt_backend.probe.cache_clear()


@pytest.mark.skipif(HAS_TRT_HERE, reason="this interpreter has TensorRT")
def _check(cfg) -> str | None:
    s = validate(cfg)
    return trt_backend.TensorRTBackend(s.backend).check(s, Output("fp32", "float"))


def test_check_says_tensorrt_not_available(compose, no_trt_env):
    cfg = compose(["backend=tensorrt"])
    assert cfg.backend.python is None and cfg.backend.pythonpath == ""
    reason = _check(cfg)
    assert reason is not None and reason.startswith("TensorRT not available: ")
    assert "No module named 'tensorrt'" in reason
    assert "TRT_PYTHON=" in reason and "backend.python=" in reason  # how to point qexp at one
    assert "docs/tensorrt.md" in reason
    assert "Traceback" not in reason


@pytest.mark.skipif(HAS_TRT_HERE, reason="this interpreter has TensorRT")
@pytest.mark.parametrize(
    "overrides",
    [
        ["quantizer=none"],
        ["quantizer=fp16"],
        ["quantizer=trt_builtin", "calibrator=entropy2"],
        ["quantizer=ptq", "observer=entropy", "quantizer.export=dynamic_range"],
    ],
    ids=["fp32", "fp16", "trt_builtin", "ptq_dynamic_range"],
)
def test_runner_records_skipped_not_a_traceback(compose, no_trt_env, tmp_path, overrides):
    cfg = compose(["backend=tensorrt", "tracking=none", *overrides])
    rec = run_job(cfg, JobSpec(job_dir=tmp_path / "job", choices={}))
    assert rec.status == SKIPPED, rec.error
    assert rec.reason.startswith("TensorRT not available: ")
    assert rec.error is None
    on_disk = json.loads((tmp_path / "job" / "result.json").read_text())
    assert on_disk["status"] == SKIPPED and on_disk["reason"] == rec.reason


def test_probe_names_a_missing_interpreter(compose, no_trt_env):
    cfg = compose(["backend=tensorrt", "backend.python=/nonexistent/python3.10"])
    reason = _check(cfg)
    assert reason.startswith("TensorRT not available: cannot start /nonexistent/python3.10")


def test_trt_builtin_refuses_what_it_cannot_do(compose):
    from qexp.quant.trt_builtin import TrtBuiltinQuantizer

    def check(*over):
        s = validate(compose(["quantizer=trt_builtin", *over]))
        return TrtBuiltinQuantizer(s.quantizer).check(s)

    assert TrtBuiltinQuantizer.consumes == frozenset({"calibrator"})
    assert check("calibrator=minmax", "backend=tensorrt") is None
    assert "needs a calibrator" in check("backend=tensorrt")
    # a backend that does not take route trt_builtin refuses it by its contract, not by name
    onnx_rt = validate(compose(["quantizer=trt_builtin", "calibrator=entropy2"]))
    assert "backend=onnxruntime runs no route trt_builtin" in combination_reason(onnx_rt)


def test_routes_follow_the_quantizer(compose):
    def output(*over):
        return QUANTIZERS.build(validate(compose(list(over))).quantizer).output()

    assert output("quantizer=none") == Output("fp32", "float")
    assert output("quantizer=fp16") == Output("fp16", "float")
    assert output("quantizer=trt_builtin", "calibrator=legacy") == Output("int8", "trt_builtin")
    assert output("quantizer=ptq") == Output("int8", "qdq")
    assert output("quantizer=ptq", "quantizer.export=dynamic_range") == Output(
        "int8", "dynamic_range"
    )
    assert output("quantizer=ptq_dr") == Output("int8", "dynamic_range")


def test_the_worker_request_is_built_from_the_typed_config(compose, tmp_path):
    """Every request field is a job field or the backend option of the same name (one place
    builds it: worker_request), and the result passes the worker's own checks."""
    import dataclasses

    s = validate(compose(["backend=tensorrt", "backend.tactic_sources=[CUDNN]"]))
    b = s.backend
    options = {f.name for f in dataclasses.fields(protocol.Request)} - set(trt_backend.JOB_FIELDS)
    assert options <= {f.name for f in dataclasses.fields(b)}
    job = {k: None for k in trt_backend.JOB_FIELDS} | {
        "onnx": "/m.onnx", "engine": "/e.plan", "out_dir": str(tmp_path), "precision": "fp32",
        "route": "float", "eval_input": "/x.npy", "batch_sizes": [1, 32],
    }  # fmt: skip
    req = trt_backend.worker_request(b, **job)
    req.validate()
    assert req.format_filter == "no_fp32" and type(req.format_filter) is str
    assert req.tactic_sources == ["CUDNN"] and req.log_level == "warning"
    assert (req.opt_level, req.eval_batch, req.iters) == (b.opt_level, b.eval_batch, b.iters)
    protocol.write(req, str(tmp_path / "r.json"))
    assert protocol.read(protocol.Request, str(tmp_path / "r.json")) == req


def test_worker_env_takes_the_configured_interpreter_and_paths(compose, monkeypatch):
    monkeypatch.setenv("TRT_PYTHON", "/opt/py310/bin/python3.10")
    monkeypatch.setenv("TRT_PYTHONPATH", "/stage/site")
    monkeypatch.setenv("TRT_LD_LIBRARY_PATH", "/stage/lib:/stage/site/tensorrt")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/lib/x")
    b = compose(["backend=tensorrt"]).backend
    exe, env = trt_backend.worker_env(b)
    assert exe == "/opt/py310/bin/python3.10"
    assert env["PYTHONPATH"].split(os.pathsep) == ["/stage/site", str(ROOT)]
    assert env["LD_LIBRARY_PATH"] == "/stage/lib:/stage/site/tensorrt:/usr/lib/x"


@pytest.mark.skipif(HAS_TRT_HERE, reason="this interpreter has TensorRT")
def test_worker_failure_comes_back_as_an_error_with_the_reason(tmp_path, no_trt_env):
    b = OmegaConf.create({"python": None, "pythonpath": "", "ld_library_path": ""})
    req = protocol.Request(onnx=str(tmp_path / "m.onnx"), engine=str(tmp_path / "e.plan"),
                           out_dir=str(tmp_path / "out"))  # fmt: skip
    with pytest.raises(trt_backend.TensorRTError, match="No module named 'tensorrt'"):
        trt_backend.call_worker(b, req, tmp_path / "request.json", timeout=120)
    resp = protocol.read(protocol.Response, str(tmp_path / "request.response.json"))
    assert not resp.ok and not resp.unsupported
    bad = protocol.Request(onnx="x", engine="y", out_dir=str(tmp_path), precision="int4")
    with pytest.raises(trt_backend.TensorRTError, match=r"request.precision='int4'"):
        trt_backend.call_worker(b, bad, tmp_path / "bad.json", timeout=120)


def test_worker_imports_only_stdlib_numpy_and_tensorrt():
    code = (
        "import sys, qexp.trt.worker, qexp.trt.build, qexp.trt.execute, qexp.trt.calibrator,"
        " qexp.trt.engine_info;"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    mods = set(out.stdout.strip().split(","))
    assert "numpy" in mods and "qexp" in mods
    heavy = {"torch", "onnx", "omegaconf", "hydra", "ultralytics", "mlflow", "onnxruntime", "cv2"}
    assert not mods & heavy, f"the worker imports {mods & heavy}"


def test_log_latency_uses_the_shared_metric_names(tmp_path):
    job = Job(cfg=OmegaConf.create({}), dir=tmp_path, cache_dir=tmp_path / "cache")
    stats = {"p50": 1.0, "p90": 1.5, "mean": 1.1, "throughput_ips": 909.0}
    trt_backend.log_latency(job, {"1": stats, "32": dict(stats, throughput_ips=9000.0)})
    assert set(job.metrics) == {
        "latency_ms_p50", "latency_ms_p90", "latency_ms_mean", "throughput_ips_b1",
        "latency_ms_p50_b32", "latency_ms_p90_b32", "latency_ms_mean_b32", "throughput_ips_b32",
    }  # fmt: skip
    assert job.metrics["throughput_ips_b32"] == 9000.0


@pytest.mark.skipif(not os.environ.get("TRT_PYTHON"), reason="TRT_PYTHON not set")
def test_probe_of_a_real_tensorrt_interpreter(compose):
    trt_backend.probe.cache_clear()
    p = trt_backend.probe_cfg(compose(["backend=tensorrt"]).backend)
    assert p["tensorrt"], p
    assert p["capabilities"]["io_tensors"]
    if not p["ok"]:  # a TensorRT without a GPU (this CPU machine): the reason says CUDA
        assert "CUDA" in p["error"] or "cuda" in p["error"]
    trt_backend.probe.cache_clear()


def test_conf_files_exist():
    assert (ROOT / "conf" / "backend" / "tensorrt.yaml").exists()
    assert Path(ROOT / "conf" / "quantizer" / "trt_builtin.yaml").exists()
