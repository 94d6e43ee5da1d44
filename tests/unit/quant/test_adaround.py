"""AdaRound: the rounding variable, one layer's optimisation, the W4 int8 container, and the
quantizer end to end on the real yolov8n at a tiny image size (real steps, real ONNX)."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from qexp.config.validate import validate
from qexp.job import Job
from qexp.quant.adaround import AdaRound, AdaRoundConfig, AdaRoundRounding, adaround_layer, beta_at
from qexp.quant.bake import int8_container
from qexp.quant.export import count_qdq
from qexp.quant.fakequant import QuantConv2d, quant_layers
from qexp.quant.reconstruct import Rows, apply_rows, patches
from qexp.runner import combination_reason

from .conftest import export_and_run


def _qconv(bits: int = 4, groups: int = 1, seed: int = 0) -> tuple[nn.Conv2d, QuantConv2d]:
    torch.manual_seed(seed)
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=groups)
    ref = nn.Conv2d(8, 16, 3, padding=1, groups=groups)
    ref.load_state_dict(conv.state_dict())
    q = QuantConv2d.from_float(conv, bits, 8, True)
    q.weight_quantizer.set_amax(conv.weight.detach().abs().reshape(16, -1).amax(1))
    return ref, q


def test_rounding_starts_at_the_fraction_and_hardens_to_floor_or_ceil():
    x = torch.tensor([-1.7, -0.2, 0.0, 0.3, 2.5, 3.9])
    r = AdaRoundRounding(x)
    assert torch.allclose(r.h(), x - torch.floor(x), atol=1e-5)
    r.hard = True
    out = r(x)
    assert set((out - torch.floor(x)).tolist()) <= {0.0, 1.0}
    assert torch.equal(out - torch.floor(x), (r.alpha >= 0).float())


def test_beta_schedule_warmup_then_anneal():
    cfg = AdaRoundConfig(iters=100, warmup=0.2)
    assert beta_at(0, 100, cfg) is None and beta_at(19, 100, cfg) is None
    assert beta_at(20, 100, cfg) == pytest.approx(20.0)
    assert beta_at(99, 100, cfg) == pytest.approx(2.0, abs=0.3)


@pytest.mark.parametrize("groups", [1, 2])
def test_rows_reproduce_the_convolution(groups):
    ref, q = _qconv(groups=groups)
    x = torch.randn(2, 8, 6, 6)
    rows = patches(ref, x)
    out = apply_rows(ref, rows, ref.weight)
    want = ref(x).flatten(2).transpose(1, 2).reshape(-1, 16)
    assert torch.allclose(out, want, atol=1e-5)


def test_adaround_layer_lowers_the_reconstruction_loss_and_bakes_grid_weights():
    ref, q = _qconv(bits=4)
    # correlated channels, as in real feature maps: with white inputs nearest rounding is
    # already optimal, and AdaRound's gain comes from rounding errors that cancel
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 1, 5, 5, generator=g) + 0.3 * torch.randn(256, 8, 5, 5, generator=g)
    act = nn.SiLU()
    rows = Rows(patches(ref, x), act(ref(x)).flatten(2).transpose(1, 2).reshape(-1, 16).detach())
    cfg = OmegaConf.structured(AdaRoundConfig(iters=300, batch_rows=512, lr=3e-3))
    out = adaround_layer(q, rows, act, cfg)
    assert out["rec_adaround"] < 0.5 * out["rec_nearest"]  # learned rounding beats nearest
    assert 0 < out["flipped"] < 0.5
    assert q.weight_quantizer.rounding is None
    k = q.weight.detach() / q.weight_quantizer.scale().reshape(-1, 1, 1, 1)
    assert torch.allclose(k, k.round(), atol=1e-4) and k.min() >= -8 and k.max() <= 7


def test_int8_container_keeps_w4_numbers_and_exports(tmp_path):
    _, q = _qconv(bits=4)
    q.input_quantizer.set_amax(3.0)
    model = nn.Sequential(q).eval()
    x = torch.randn(1, 8, 6, 6)
    before = model(x)
    assert int8_container(model) == ["0"]
    assert q.weight_quantizer.bits == 8
    assert torch.allclose(model(x), before, atol=1e-5)
    path = tmp_path / "w4.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17)
    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - before.detach().numpy()).max() < 1e-4


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.conv(x))


def test_adaround_without_a_block_list_uses_collection_passes():
    """A model that is not a YOLO block list: rows come from grouped passes; loss still falls."""
    from qexp.quant.adaround import adaround, summary
    from qexp.quant.placement import prepare

    torch.manual_seed(0)
    fmodel = nn.Sequential(_Block(3, 8), _Block(8, 8), nn.Conv2d(8, 4, 1)).eval()
    qmodel = copy.deepcopy(fmodel)
    plan = prepare(qmodel, [], w_bits=4, a_bits=8)
    for layer in quant_layers(qmodel).values():
        layer.input_quantizer.set_amax(4.0)
        w = layer.weight.detach().abs()
        layer.weight_quantizer.set_amax(w.reshape(w.shape[0], -1).amax(1))
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(1, 3, 16, 16, generator=g).numpy() for _ in range(8)]
    cfg = OmegaConf.structured(
        AdaRoundConfig(w_bits=4, iters=200, rows=1024, batch_rows=256, layers_per_pass=2)
    )
    report = adaround(fmodel, qmodel, images, cfg)
    assert list(report) == plan.quantized
    s = summary(report)
    assert s["rec_loss_adaround"] < s["rec_loss_nearest"]


@pytest.mark.assets
def test_adaround_quantizer_end_to_end(tmp_path, compose, assets):
    """quantizer=adaround at W4A8 on yolov8n (64 px, 4 images, few steps): the rounding
    loss falls, the cache serves a second job, and the Q/DQ ONNX runs in ORT like torch."""
    from qexp.data import load_eval_data
    from qexp.registry import MODEL_FAMILIES

    cfg = compose(
        [
            "quantizer=adaround", "data=tiny", "model.imgsz=64", "quantizer.w_bits=4",
            "quantizer.iters=30", "quantizer.rows=1024", "quantizer.batch_rows=256",
            "quantizer.layers_per_pass=32", "data.calib.num=4", "data.max_images=2",
        ]
    )  # fmt: skip
    assert combination_reason(validate(cfg)) is None
    job = Job(cfg=cfg, dir=tmp_path / "job", cache_dir=tmp_path / "cache")
    det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    data = load_eval_data(cfg.data, job)
    deploy = AdaRound(job.settings.quantizer).quantize(job, det, data)
    s = deploy.info["adaround"]
    assert s["layers"] == len(deploy.info["quantized"]) > 50
    assert s["rec_loss_adaround"] < s["rec_loss_nearest"]
    assert "adaround_s" in job.metrics and job.artifacts["adaround_layers"]
    for layer in quant_layers(deploy.module).values():  # W4 values held by int8 quantizers
        wq = layer.weight_quantizer
        k = layer.weight.detach() / wq.scale().reshape(-1, 1, 1, 1)
        assert wq.bits == 8 and k.abs().max() <= 8 + 1e-3

    model, got, want = export_and_run(deploy, tmp_path / "onnx", data.calibration(64, 1)[0])
    assert count_qdq(model)["QuantizeLinear"] > 50
    cos = float((got * want).sum() / (np.linalg.norm(got) * np.linalg.norm(want)))
    assert cos > 0.999

    job2 = Job(cfg=cfg, dir=tmp_path / "job2", cache_dir=tmp_path / "cache")
    again = AdaRound(job2.settings.quantizer).quantize(job2, det, data)
    assert "adaround_s" not in job2.metrics  # served from the cache
    w1 = {n: m.weight for n, m in quant_layers(deploy.module).items()}
    for n, m in quant_layers(again.module).items():
        assert torch.equal(m.weight, w1[n])


def test_check_refuses_bad_combinations(compose):
    """The rules every fake-quant quantizer shares (qexp.quant.pipeline.check): AdaRound used to
    let a_bits != 8 through to export=dynamic_range, whose JSON TensorRT applies at 8 bits."""

    def reason(*over):
        return combination_reason(validate(compose(["quantizer=adaround", *over])))

    for bits in ("quantizer.w_bits=4", "quantizer.a_bits=4"):
        why = reason("quantizer.export=dynamic_range", bits, "backend=torch")
        assert "w_bits and a_bits must be 8" in why
    assert "activations only" in reason("observer.weight=entropy")
    assert reason() is None and reason("quantizer.w_bits=4") is None
