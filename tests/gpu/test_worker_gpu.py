"""The real worker on a real GPU: every precision and INT8 route on a small conv net.

Skips itself unless the worker interpreter ($TRT_PYTHON, else this one) imports TensorRT and
sees a CUDA device. Run on the GPU machine with `pytest -m gpu tests/gpu` (see docs/tensorrt.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from qexp.backends import tensorrt as trt_backend
from qexp.backends import trt_stage as stage
from qexp.models.export import export_onnx
from qexp.trt import engine_info, protocol

pytestmark = pytest.mark.gpu
IMGSZ = 64


def _bcfg():
    b = OmegaConf.create(
        {"python": "${oc.env:TRT_PYTHON,null}", "pythonpath": "${oc.env:TRT_PYTHONPATH,''}",
         "ld_library_path": "${oc.env:TRT_LD_LIBRARY_PATH,''}"}
    )  # fmt: skip
    return b


@pytest.fixture(scope="module")
def probe():
    p = trt_backend.probe_cfg(_bcfg())
    if not p.get("ok"):
        pytest.skip(f"TensorRT not available: {p.get('error')}")
    return p


class Net(nn.Module):
    """Conv-SiLU blocks, a concat and a YOLO-like reshape head at a static batch of 1."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.SiLU()
        )
        self.b = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1), nn.SiLU())
        self.head = nn.Conv2d(64, 20, 1)

    def forward(self, x):
        y = self.a(x)
        z = self.head(torch.cat([y, self.b(y)], 1))
        return z.view(z.shape[0], 20, -1).sigmoid()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("trt")
    net = Net().eval()
    onnx = export_onnx(net, d / "net.onnx", IMGSZ, 1, simplify=False)
    dyn = stage.dynamic_batch(onnx, d / "net_dyn.onnx")
    rng = np.random.RandomState(0)
    images = (rng.rand(10, 3, IMGSZ, IMGSZ) * 255).astype(np.uint8)
    np.save(d / "images.npy", images)
    (d / "calib").mkdir()
    np.save(d / "calib" / "calib_0000.npy", images[:8])
    with torch.no_grad():
        ref = net(torch.from_numpy(images.astype(np.float32) / 255.0)).numpy()
    # ranges for the dynamic-range route: |max| of every tensor, measured with ONNX Runtime
    import onnx as onnx_lib
    import onnxruntime as ort

    m = onnx_lib.load(str(dyn))
    float_ops = {"Conv", "Sigmoid", "Mul", "Concat", "Reshape", "Add"}
    names = [o for n in m.graph.node if n.op_type in float_ops for o in n.output]
    m.graph.output.extend([onnx_lib.helper.make_tensor_value_info(n, 1, None) for n in names])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(names, {"images": images.astype(np.float32) / 255.0})
    ranges = {
        "images": 1.0,
        **{
            n: float(np.abs(o).max())
            for n, o in zip(names, outs, strict=True)
            if o.dtype == np.float32
        },
    }
    (d / "ranges.json").write_text(json.dumps(ranges))
    return d, dyn, ref


ROUTES = [
    ("fp32", "float", None),
    ("fp16", "float", None),
    ("int8", "trt_builtin", "entropy2"),
    ("int8", "trt_builtin", "minmax"),
    ("int8", "dynamic_range", None),
]


@pytest.mark.parametrize(
    ("precision", "route", "calibrator"),
    ROUTES,
    ids=[r[0] + "-" + r[1] + "-" + str(r[2]) for r in ROUTES],
)
def test_worker_builds_measures_and_reports(probe, assets, tmp_path, precision, route, calibrator):
    d, dyn, ref = assets
    req = protocol.Request(
        onnx=str(dyn), engine=str(tmp_path / "e.plan"), out_dir=str(tmp_path / "out"),
        precision=precision, route=route, calibrator=calibrator,
        calib_dir=str(d / "calib") if route == "trt_builtin" else None,
        calib_cache=str(tmp_path / "calib.cache") if route == "trt_builtin" else None,
        dynamic_range=str(d / "ranges.json") if route == "dynamic_range" else None,
        timing_cache=str(d / "timing.cache"), workspace_gb=1.0, batch_sizes=[1, 4],
        eval_input=str(d / "images.npy"), eval_batch=1, warmup=5, iters=20, cuda_graph=True,
        profile_iters=3, opt_level=1,
    )  # fmt: skip
    resp = trt_backend.call_worker(_bcfg(), req, tmp_path / "request.json", timeout=600)
    assert resp.ok and resp.engine_bytes > 0 and resp.build_s > 0
    assert resp.tensorrt == probe["tensorrt"] and resp.gpu
    raw = np.load(resp.outputs[0])
    assert raw.shape == ref.shape
    tol = {"fp32": 1e-3, "fp16": 2e-2}.get(precision, 0.15)
    assert np.abs(raw - ref).max() < tol, np.abs(raw - ref).max()
    assert set(resp.latency) == {"1", "4"}
    for st in resp.latency.values():
        assert 0 < st["min"] <= st["p50"] <= st["p90"] and st["iters"] == 20
    assert resp.batch_diff["4"] < tol
    s = engine_info.summarize(engine_info.load(resp.layers["1"]))
    want = {"fp32": "fp32", "fp16": "fp16"}.get(precision, "int8")
    assert s.precisions.get(want, 0) > 0, s.precisions
    prof = json.loads(Path(resp.layer_profile).read_text())
    assert prof["layers"] and prof["total_ms"] > 0
    if route == "trt_builtin":
        assert Path(req.calib_cache).stat().st_size > 0 and resp.build_stats["calib_s"] > 0
    again = trt_backend.call_worker(_bcfg(), req, tmp_path / "request2.json", timeout=600)
    assert again.reused_engine and again.build_s == resp.build_s


class QConv(nn.Module):
    """Conv with Q/DQ on its input (per tensor) and weight (per channel), as ptq exports."""

    def __init__(self, conv: nn.Conv2d, amax: float):
        super().__init__()
        self.conv, self.scale = conv, amax / 127
        self.wscale = (conv.weight.detach().abs().amax(dim=(1, 2, 3)) / 127).clamp(min=1e-8)

    def forward(self, x):
        x = torch.fake_quantize_per_tensor_affine(x, self.scale, 0, -128, 127)
        zero = torch.zeros_like(self.wscale, dtype=torch.int32)
        w = torch.fake_quantize_per_channel_affine(
            self.conv.weight, self.wscale, zero, 0, -128, 127
        )
        c = self.conv
        return nn.functional.conv2d(x, w, c.bias, c.stride, c.padding)


def test_qdq_route_builds_int8_from_a_fake_quant_export(probe, assets, tmp_path):
    d, _, ref = assets
    q = Net().eval()
    q.a[0], q.a[2] = QConv(q.a[0], 1.0), QConv(q.a[2], 4.0)
    q.b[0], q.head = QConv(q.b[0], 4.0), QConv(q.head, 4.0)
    onnx = export_onnx(q, d / "qnet.onnx", IMGSZ, 1, simplify=False)
    req = protocol.Request(
        onnx=str(stage.dynamic_batch(onnx, d / "qnet_dyn.onnx")), engine=str(tmp_path / "q.plan"),
        out_dir=str(tmp_path / "out"), precision="int8", route="qdq", batch_sizes=[1, 4],
        eval_input=str(d / "images.npy"), warmup=2, iters=10, profile_iters=0, opt_level=1,
    )  # fmt: skip
    resp = trt_backend.call_worker(_bcfg(), req, tmp_path / "request.json", timeout=600)
    s = engine_info.summarize(engine_info.load(resp.layers["1"]))
    assert s.precisions.get("int8", 0) > 0 and s.reformat_by_origin.get("QDQ", 0) >= 1
    assert np.abs(np.load(resp.outputs[0]) - ref).max() < 0.2


def test_a_broken_onnx_fails_with_the_parser_message(probe, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    req = protocol.Request(
        onnx=str(bad), engine=str(tmp_path / "e.plan"), out_dir=str(tmp_path), batch_sizes=[1]
    )
    with pytest.raises(trt_backend.TensorRTError, match="cannot parse") as e:
        trt_backend.call_worker(_bcfg(), req, tmp_path / "r.json", timeout=300)
    assert "TensorRT log tail" in str(e.value)


def test_a_serving_worker_shares_its_timing_cache_between_builds(probe, assets, tmp_path):
    """--serve: one process answers every request; the second build of the same network finds
    its tactics in the in-memory timing cache (TensorRT 8.6.0 cannot reload a serialized cache
    holding Myelin entries), and the build profile, per-batch outputs and GPU are reported."""
    d, dyn, ref = assets
    b = OmegaConf.merge(_bcfg(), {"persistent_worker": True, "timing_cache": None,
                                  "lazy_loading": True, "jit_cache": str(tmp_path / "jit")})  # fmt: skip
    resps = []
    for i in range(2):
        req = protocol.Request(
            onnx=str(dyn), engine=str(tmp_path / f"e{i}.plan"), out_dir=str(tmp_path / f"o{i}"),
            precision="fp16", batch_sizes=[1, 4], eval_input=str(d / "images.npy"),
            warmup=5, iters=20, profile_iters=0, opt_level=2, build_profile=True,
            reuse_engine=False, latency_lock=str(tmp_path / "latency.lock"),
        )  # fmt: skip
        resps.append(trt_backend.call_worker(b, req, tmp_path / f"o{i}" / "request.json", 600))
    first, second = resps
    assert first.pid == second.pid != 0
    assert not any("rejected the timing cache" in n for n in first.notes + second.notes)
    p1, p2 = (json.loads(Path(r.build_profile).read_text()) for r in resps)
    assert p1["tactics_timed"] > 0 and p1["layers_tuned"] > 0, p1
    assert p2["tactics_timed"] < p1["tactics_timed"] / 4, (p1["tactics_timed"], p2)
    assert (Path(first.build_profile).parent / "build_log.txt.gz").exists()
    assert set(first.outputs_by_batch) == {"4"}
    assert np.abs(np.load(first.outputs_by_batch["4"][0]) - ref).max() < 2e-2
    assert first.device["name"] and first.device["uuid"].startswith("GPU-")
    assert all(st["cuda_graph"] for st in first.latency.values()), first.notes
    from qexp.backends import trt_server

    trt_server.close_all()
