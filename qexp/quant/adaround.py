"""quantizer=adaround: learned weight rounding (Nagel et al. 2020, "Up or Down? Adaptive
Rounding for Post-Training Quantization"), on top of PTQ's fake-quant model and export.

Per layer, in execution order: ``W_soft = s * clamp(floor(W/s) + h(V), lo, hi)`` with the
rectified sigmoid ``h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)``; V starts where
``h(V)`` equals the fractional part of ``W/s`` (so the first step is plain nearest-ish rounding)
and is trained with Adam to minimise the layer's output error on calibration rows (see
:mod:`qexp.quant.reconstruct`) plus ``lambda * sum(1 - |2h(V) - 1|^beta)``, with beta annealed
from 20 to 2 after a warm-up without the regulariser (BRECQ's schedule). Then each weight is
rounded up where V >= 0 and baked into the layer. Sequential: every layer's inputs come from
the model with all earlier layers already rounded (block outputs cached per image), because the
asymmetric objective makes a layer compensate its predecessors' errors, and compensating
errors that then change makes things worse (measured: yolov5n W4A8 fell below nearest rounding
when 16 layers shared one collection pass).
Activations are quantized by the chosen observer, exactly as ``quantizer=ptq`` does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from qexp.config.schema import bounded
from qexp.interfaces import Deployable, Detector, EvalData
from qexp.job import Job, content_hash
from qexp.progress import track as plain_track
from qexp.quant import model_cache, partial_forward, pipeline, steps
from qexp.quant.bake import int8_container
from qexp.quant.calibrate import weights_hash
from qexp.quant.deployable import make_deployable
from qexp.quant.fakequant import QuantLayer, quant_layers
from qexp.quant.pipeline import PTQConfig
from qexp.quant.reconstruct import (
    BlockwiseInputs,
    Rows,
    apply_rows,
    collect,
    execution_order,
    float_targets,
    follower_activation,
    plan_passes,
)
from qexp.registry import QUANTIZERS

log = logging.getLogger("qexp")
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (AdaRound eq. 23)
CACHE_VERSION = 2  # 2: sequential by block
CACHE_FILES = ("weights.pt", "report.json")  # baked weights of the rounded layers; report


@dataclass
class AdaRoundConfig(PTQConfig):
    name: str = "adaround"
    # Adam steps per layer (papers: 10k-20k on a GPU); 0 = nearest rounding
    iters: int = bounded(2000, ge=0)
    lr: float = bounded(1e-3, gt=0)
    batch_rows: int = bounded(1024, ge=1)  # rows (output positions) per step
    rows: int = bounded(16384, ge=1)  # rows sampled per layer over the calibration images
    reg_weight: float = bounded(0.01, ge=0)  # lambda of the rounding regulariser
    beta_start: float = bounded(20.0, gt=0)
    beta_end: float = bounded(2.0, gt=0)
    warmup: float = bounded(0.2, ge=0, lt=1)  # fraction of iters without the regulariser
    images: int | None = bounded(None, ge=1)  # images for the rows (None: data.calib.num)
    layers_per_pass: int = bounded(16, ge=1)  # models without a block list: layers a pass
    max_rows_mb: float = bounded(1024.0, gt=0)  # memory bound of one pass's rows


class AdaRoundRounding(nn.Module):
    """The rounding hook of a weight quantizer: ``x -> floor(x) + h(V)`` (soft) or
    ``floor(x) + [V >= 0]`` (hard, after optimisation)."""

    def __init__(self, w_scaled: torch.Tensor) -> None:
        super().__init__()
        rest = (w_scaled - torch.floor(w_scaled)).detach()
        self.alpha = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))
        self.hard = False

    def h(self) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = (self.alpha >= 0).to(x.dtype) if self.hard else self.h()
        return torch.floor(x) + up

    def regularizer(self, beta: float) -> torch.Tensor:
        return (1 - (2 * self.h() - 1).abs().pow(beta)).sum()


def beta_at(step: int, iters: int, cfg) -> float | None:
    """The annealed beta at ``step``; None during the warm-up (no regulariser)."""
    start = int(cfg.warmup * iters)
    if step < start:
        return None
    frac = (step - start) / max(1, iters - start)
    return cfg.beta_end + (cfg.beta_start - cfg.beta_end) * max(0.0, 1 - frac)


@torch.no_grad()
def rec_loss(layer: QuantLayer, rows: Rows, act: nn.Module, chunk: int = 8192) -> float:
    """Mean over rows of the squared output error with the layer's current fake-quant weight."""
    w = layer.weight_quantizer(layer.weight.detach())
    total = 0.0
    for i in range(0, rows.x.shape[0], chunk):
        pred = act(apply_rows(layer, rows.x[i : i + chunk], w))
        total += float((pred - rows.y[i : i + chunk]).pow(2).sum())
    return total / rows.x.shape[0]


def adaround_layer(layer: QuantLayer, rows: Rows, act: nn.Module, cfg, seed: int = 0) -> dict:
    """Learn the rounding of one layer's weights on ``rows``, then bake it. Returns the
    reconstruction loss with nearest and with the learned rounding, and the flip rate."""
    wq = layer.weight_quantizer
    before = rec_loss(layer, rows, act)
    s = wq.scale().to(layer.weight.device)
    s = s.reshape(-1, *([1] * (layer.weight.dim() - 1))) if wq.per_channel else s
    w = layer.weight.detach()
    rounder = AdaRoundRounding(w / s).to(w.device)
    wq.rounding = rounder
    opt = torch.optim.Adam([rounder.alpha], lr=cfg.lr)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = rows.x.shape[0]
    bsz = min(cfg.batch_rows, n)
    for step in range(cfg.iters):
        b = torch.randint(n, (bsz,), generator=gen).to(rows.x.device)
        pred = act(apply_rows(layer, rows.x[b], wq(w)))
        loss = (pred - rows.y[b]).pow(2).sum(1).mean()
        beta = beta_at(step, cfg.iters, cfg)
        if beta is not None:
            loss = loss + cfg.reg_weight * rounder.regularizer(beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    rounder.hard = True
    with torch.no_grad():
        flips = float(
            ((rounder.alpha >= 0).float() != torch.round(w / s) - torch.floor(w / s)).float().mean()
        )
    after = rec_loss(layer, rows, act)
    layer.bake()  # the learned rounding becomes the weights; export then reproduces it
    return {"rec_nearest": before, "rec_adaround": after, "flipped": flips}


def adaround(
    fmodel: nn.Module,
    qmodel: nn.Module,
    images: list,
    cfg,
    seed: int = 0,
    track: Callable = plain_track,
    device: torch.device | str = "cpu",
) -> dict[str, dict]:
    """AdaRound every enabled weight quantizer of ``qmodel`` against ``fmodel``, in place.

    ``images``: calibration inputs (1,3,S,S). Returns per-layer losses in execution order."""
    layers = {n: m for n, m in quant_layers(qmodel).items() if m.weight_quantizer.enabled}
    if not layers or cfg.iters <= 0:
        return {}
    fmodel.to(device).eval()
    qmodel.to(device).eval()
    example = torch.from_numpy(images[0]).float().to(device)
    order = execution_order(qmodel, list(layers), example)
    try:
        if partial_forward.blocks(qmodel) is not None and all(
            n.startswith("model.") and n.split(".")[1].isdigit() for n in order
        ):
            return _blockwise(fmodel, qmodel, layers, order, images, cfg, seed, track, device)
        return _by_passes(fmodel, qmodel, layers, order, images, cfg, seed, track, device)
    finally:
        fmodel.cpu()
        qmodel.cpu()


def _fit(name: str, layer: QuantLayer, rows: Rows, qmodel: nn.Module, cfg, seed: int, device):
    t = time.perf_counter()
    with torch.enable_grad():
        out = adaround_layer(
            layer, Rows(rows.x.to(device), rows.y.to(device)), follower_activation(qmodel, name),
            cfg, seed,
        )  # fmt: skip
    out["seconds"] = round(time.perf_counter() - t, 3)
    return out


def _blockwise(fmodel, qmodel, layers, order, images, cfg, seed, track, device) -> dict:
    """Sequential AdaRound: each layer's rows come from the model with every earlier layer
    already rounded (block outputs cached, see :class:`BlockwiseInputs`)."""
    per_image = max(1, -(-cfg.rows // len(images)))
    log.info(
        "adaround: %d layers, sequential by block over %d images, %d iters/layer on %s",
        len(order), len(images), cfg.iters, device,
    )  # fmt: skip
    idx, ys = float_targets(fmodel, order, images, per_image, seed, device)
    inputs = BlockwiseInputs(qmodel, images, device)
    block_of = {n: partial_forward.block_of(n, qmodel) for n in order}
    report: dict[str, dict] = {}
    done_block = -1
    for name in track(order, "adaround: layers"):
        for b in range(done_block + 1, block_of[name]):
            inputs.advance(b)  # blocks before this layer's are final: cache their outputs
        done_block = max(done_block, block_of[name] - 1)
        rows = Rows(inputs.rows(name, block_of[name], idx[name]), ys.pop(name))
        report[name] = _fit(name, layers[name], rows, qmodel, cfg, seed, device)
    return report


def _by_passes(fmodel, qmodel, layers, order, images, cfg, seed, track, device) -> dict:
    """For models without a block list: rows for groups of layers from one pass each (within a
    group, later layers see earlier ones with nearest rounding)."""
    passes = plan_passes(layers, order, cfg.rows, cfg.layers_per_pass, cfg.max_rows_mb)
    log.info(
        "adaround: %d layers, %d passes over %d images, %d iters/layer on %s",
        len(order), len(passes), len(images), cfg.iters, device,
    )  # fmt: skip
    report: dict[str, dict] = {}
    done = 0
    for group in passes:
        rows = collect(fmodel, qmodel, group, images, len(images), cfg.rows, seed + done, device)
        for name in track(group, f"adaround: layers {done + 1}-{done + len(group)}/{len(order)}"):
            report[name] = _fit(name, layers[name], rows.pop(name), qmodel, cfg, seed, device)
        done += len(group)
    return report


def summary(report: dict[str, dict]) -> dict:
    """Totals of the per-layer report (what the record's info keeps)."""
    if not report:
        return {"layers": 0}
    near = sum(r["rec_nearest"] for r in report.values())
    ada = sum(r["rec_adaround"] for r in report.values())
    better = sum(r["rec_adaround"] < r["rec_nearest"] for r in report.values())
    return {
        "layers": len(report),
        "layers_improved": better,
        "rec_loss_nearest": near,
        "rec_loss_adaround": ada,
        "flipped_mean": sum(r["flipped"] for r in report.values()) / len(report),
    }


@QUANTIZERS.register("adaround", schema=AdaRoundConfig)
class AdaRound(pipeline.FakeQuantQuantizer[AdaRoundConfig]):
    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable:
        s, q = job.settings, self.cfg
        c = self.calibrated(job, detector, data)
        n_img, directory, cached = pipeline.trained(
            job, "adaround", CACHE_VERSION, c, names=CACHE_FILES
        )
        qmodel, plan, imgsz = c.qmodel, c.plan, s.model.imgsz
        t = time.perf_counter()
        if cached is not None:
            state, report = cached
            layers = quant_layers(qmodel)
            with torch.no_grad():
                for name, w in state.items():
                    layers[name].weight.copy_(w)
            log.info("adaround: rounding loaded from the cache %s", directory)
        else:
            images = data.calibration(imgsz, n_img)
            report = adaround(
                c.fmodel, qmodel, images, q, s.seed, job.track, steps.quant_device(job)
            )
            baked = {n: m.weight for n, m in quant_layers(qmodel).items() if n in report}
            model_cache.save(directory, baked, report, CACHE_FILES)
            job.log_metrics({"adaround_s": time.perf_counter() - t})
        low = int8_container(qmodel)
        qmodel.eval()
        rep_path = job.path("adaround_layers.json")
        rep_path.write_text(json.dumps(report, indent=1))
        job.add_artifact("adaround_layers", rep_path)
        job.log_metrics(c.timings())
        info = {
            **c.info(s),
            "calib_images": c.num,
            "act_amax": c.act_amax(),
            "adaround": {**summary(report), "images": n_img, "cache": str(directory)},
            "int8_container_layers": len(low),
        }
        log.info("adaround: %s", info["adaround"])
        tag = content_hash(weights_hash(qmodel), plan.quantized, n=8)
        return make_deployable(detector, qmodel, q.export, imgsz, tag, info, q.a_bits)
