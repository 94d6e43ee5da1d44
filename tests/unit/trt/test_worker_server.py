"""The long-lived worker (``--serve``) and its client, with the real worker process.

On a machine without TensorRT every request comes back ok=false with the import error, which is
enough to prove the protocol: one process answers every request, a dead or hung worker fails
only the job it was serving, and the next job gets a fresh worker.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest
from omegaconf import OmegaConf

from qexp.backends import tensorrt as trt_backend
from qexp.backends import trt_server
from qexp.trt import protocol
from tests.conftest import ROOT

HAS_TRT = __import__("importlib").util.find_spec("tensorrt") is not None
pytestmark = pytest.mark.skipif(HAS_TRT, reason="this interpreter has TensorRT")


@pytest.fixture
def env():
    e = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    yield e
    trt_server.close_all()


def _request(tmp_path, name):
    req = protocol.Request(onnx=str(tmp_path / "m.onnx"), engine=str(tmp_path / f"{name}.plan"),
                           out_dir=str(tmp_path / name))  # fmt: skip
    path = tmp_path / name / "request.json"
    protocol.write(req, str(path))
    return path


def test_one_serving_process_answers_every_request(tmp_path, env):
    srv = trt_server.server_for(sys.executable, env, tmp_path)
    pids = set()
    for name in ("a", "b", "c"):
        resp_path = srv.submit(_request(tmp_path, name), timeout=120)
        resp = protocol.read(protocol.Response, str(resp_path))
        assert not resp.ok and "No module named 'tensorrt'" in resp.error
        pids.add(resp.pid)
        assert (tmp_path / name / "worker.log").exists()
    assert pids == {srv.proc.pid}
    assert trt_server.server_for(sys.executable, env, tmp_path) is srv


def test_a_worker_that_dies_fails_the_request_and_is_replaced(tmp_path, env):
    srv = trt_server.server_for(sys.executable, env, tmp_path)
    srv.submit(_request(tmp_path, "warm"), timeout=120)  # it is up and serving
    threading.Timer(0.5, lambda: os.killpg(srv.proc.pid, signal.SIGKILL)).start()
    # a request it never answers: a path on a FIFO blocks its read until the kill
    fifo = tmp_path / "never.json"
    os.mkfifo(fifo)
    with pytest.raises(trt_server.WorkerGone, match="exited with status -9"):
        srv.submit(fifo, timeout=120)
    fresh = trt_server.server_for(sys.executable, env, tmp_path)
    assert fresh is not srv and fresh.alive()


def test_a_hung_worker_times_out_and_is_killed(tmp_path, env):
    srv = trt_server.server_for(sys.executable, env, tmp_path)
    fifo = tmp_path / "hang.json"
    os.mkfifo(fifo)
    t = time.monotonic()
    with pytest.raises(trt_server.WorkerGone, match="timed out after 2 s"):
        srv.submit(fifo, timeout=2)
    assert not srv.alive() and time.monotonic() - t < 60


def test_call_worker_through_a_persistent_worker_names_the_error(tmp_path, monkeypatch):
    for var in ("TRT_PYTHON", "TRT_PYTHONPATH", "TRT_LD_LIBRARY_PATH"):
        monkeypatch.delenv(var, raising=False)
    b = OmegaConf.create({"python": None, "pythonpath": "", "ld_library_path": "",
                          "persistent_worker": True, "timing_cache": str(tmp_path / "tc"),
                          "lazy_loading": True, "jit_cache": str(tmp_path / "jit")})  # fmt: skip
    _, env = trt_backend.worker_env(b)
    assert env["CUDA_MODULE_LOADING"] == "LAZY"
    assert env["CUDA_CACHE_PATH"] == str((tmp_path / "jit").resolve())
    req = protocol.Request(onnx=str(tmp_path / "m.onnx"), engine=str(tmp_path / "e.plan"),
                           out_dir=str(tmp_path / "out"))  # fmt: skip
    with pytest.raises(trt_backend.TensorRTError, match="No module named 'tensorrt'"):
        trt_backend.call_worker(b, req, tmp_path / "out" / "request.json", timeout=120)
    trt_server.close_all()
