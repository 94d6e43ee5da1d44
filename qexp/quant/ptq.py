"""quantizer=ptq: post-training quantization with our observers (or ModelOpt / MQBench).

The steps are reusable on their own (AdaRound and QAT build on them):
``prepare_model`` (fold BN, swap in fake-quant layers) -> ``calibrate`` (cached statistics)
-> ``set_ranges`` (observers freeze the scales) -> ``make_deployable`` (export closure);
``calibrated`` runs the first three with a job's settings.
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import onnx
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from qexp.config.schema import QuantizerConfig
from qexp.device import describe, resolve_device
from qexp.interfaces import Deployable, Detector, EvalData
from qexp.job import Job, content_hash
from qexp.models.onnx_fold import fold_static_shapes
from qexp.quant import observers
from qexp.quant.calibrate import (
    CACHE_VERSION,
    cached_stats,
    stats_device,
    weights_hash,
    write_histograms,
)
from qexp.quant.export import ExportError, count_qdq, write_dynamic_range
from qexp.quant.fakequant import ActQuantizer, quant_layers
from qexp.quant.fold import fold_batchnorm
from qexp.quant.histogram import HistStats
from qexp.quant.ignore import select_ignored
from qexp.quant.placement import QuantPlan, prepare, quantizable
from qexp.registry import QUANTIZERS

log = logging.getLogger("qexp")
IMPLS = ("native", "modelopt", "mqbench")


@dataclass
class PTQConfig(QuantizerConfig):
    name: str = "ptq"
    residual: bool = True  # quantize the identity branch of residual adds (TensorRT fusion)
    fold_bn: bool = True


def float_twin(module: nn.Module, fold_bn: bool = True) -> nn.Module:
    """A float32 eval copy of ``module`` with BatchNorm folded (the calibration model)."""
    model = copy.deepcopy(module).float().eval()
    if fold_bn:
        fold_batchnorm(model)
    return model


def prepare_model(
    module: nn.Module, ignore_patterns, qcfg, fold_bn: bool = True
) -> tuple[nn.Module, nn.Module, QuantPlan]:
    """(float BN-folded model, its fake-quant twin, plan). Quantizers start disabled."""
    fmodel = float_twin(module, fold_bn)
    layers, _ = quantizable(fmodel)
    ignored = select_ignored(list(ignore_patterns), fmodel, layers)
    qmodel = copy.deepcopy(fmodel)
    plan = prepare(
        qmodel,
        ignored,
        w_bits=int(qcfg.w_bits),
        a_bits=int(qcfg.a_bits),
        per_channel=bool(qcfg.per_channel),
        residual=bool(OmegaConf.select(qcfg, "residual", default=True)),
    )
    return fmodel, qmodel, plan


def quant_device(job: Job) -> torch.device:
    """The device of this job's quantizer work (``quantizer.device``), recorded in its info."""
    device = resolve_device(str(OmegaConf.select(job.cfg, "quantizer.device", default="auto")))
    job.info["quant_device"] = describe(device)
    return device


def calibrate(
    job: Job, fmodel: nn.Module, data: EvalData, imgsz: int, num: int | None, bins: int
) -> tuple[dict[str, HistStats], float, bool]:
    """(stats per layer input, seconds, cache hit) for every quantizable layer of ``fmodel``,
    computed on ``quantizer.device``."""
    layers, _ = quantizable(fmodel)
    calib = OmegaConf.to_container(job.cfg.data.calib, resolve=True)
    # The key leaves the device out on purpose: a CUDA pass equals the CPU pass up to float32
    # summation order (min/max/range to ~1e-5 relative, histograms to ~1e-4 of their mass,
    # observer ranges to 1%: tests/gpu/test_calibration_device.py), well inside what separates
    # two observers, so either device's entry serves both; calib_device records which ran.
    key = ("calib", CACHE_VERSION, weights_hash(fmodel), imgsz, calib, num, bins, layers)
    directory = job.cache("calib", *key)
    device = quant_device(job)
    t = time.perf_counter()
    stats, hit = cached_stats(
        directory,
        fmodel,
        layers,
        lambda: data.calibration(imgsz, num),
        bins=bins,
        track=lambda it, d: job.track(it, d, total=num),
        device=device,
    )
    job.info["calib_device"] = stats_device(directory) if hit else str(device)
    write_histograms(job, stats)  # the report's calibration plot reads this artifact
    return stats, time.perf_counter() - t, hit


@torch.no_grad()
def set_ranges(
    qmodel: nn.Module, plan: QuantPlan, stats: dict[str, HistStats], ocfg
) -> dict[str, float]:
    """Freeze scales: ``observer.act`` on the stats, ``observer.weight`` on the weights.

    Returns the activation amax per layer."""
    act, weight = observers.get(ocfg.act), observers.get(ocfg.weight)
    amaxes = {}
    for name, layer in quant_layers(qmodel).items():
        qa = layer.input_quantizer
        amaxes[name] = act.act_amax(stats[name], ocfg, qa.bits)
        qa.set_amax(amaxes[name])
        wq = layer.weight_quantizer
        w = cast(torch.Tensor, layer.weight)
        wq.set_amax(weight.weight_amax(w, ocfg, wq.bits, wq.per_channel))
    for block, first in plan.residual.items():
        cast(ActQuantizer, qmodel.get_submodule(block).residual_quantizer).set_amax(amaxes[first])
    return amaxes


@dataclass
class Calibrated:
    """PTQ's result before export, the start of AdaRound and QAT too: the float model, its
    fake-quant twin with ranges set by the job's observer, and how calibration went."""

    fmodel: nn.Module
    qmodel: nn.Module
    plan: QuantPlan
    amax: dict[str, float]  # activation amax per layer
    num: int | None  # data.calib.num (None: the whole calibration split)
    seconds: float
    hit: bool  # calibration statistics served from the cache

    def info(self, ocfg) -> dict:
        """The record fields every observer-calibrated quantizer reports."""
        return {
            **self.plan.info(),
            "observer": {"act": str(ocfg.act), "weight": str(ocfg.weight)},
            "calib_cache": "hit" if self.hit else "miss",
        }

    def act_amax(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in self.amax.items()}


def calibrated(job: Job, detector: Detector, data: EvalData) -> Calibrated:
    """prepare -> calibrate (cached) -> set ranges, with the job's ignore list and observer."""
    from qexp.quant.sensitivity import ignore_patterns  # ignore=sensitivity_topk: ranked layers

    cfg, q = job.cfg, job.cfg.quantizer
    patterns = ignore_patterns(job, detector, data)
    fmodel, qmodel, plan = prepare_model(detector.module, patterns, q, bool(q.fold_bn))
    num = OmegaConf.select(cfg, "data.calib.num")
    imgsz, bins = int(cfg.model.imgsz), int(cfg.observer.bins)
    stats, seconds, hit = calibrate(job, fmodel, data, imgsz, num, bins)
    amax = set_ranges(qmodel, plan, stats, cfg.observer)
    return Calibrated(fmodel, qmodel, plan, amax, num, seconds, hit)


def export_qdq(
    detector: Detector, qmodel: nn.Module, path: Path, imgsz: int, batch: int, dynamic: bool = False
) -> Path:
    """The Q/DQ ONNX of a fake-quant model, checked to hold Q/DQ nodes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    params = inspect.signature(detector.export_onnx).parameters
    if "simplify" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        # a simplifier may fold or move the Q/DQ pairs TensorRT needs
        kw: dict[str, Any] = {"dynamic": True} if dynamic else {}
        cast(Any, detector).export_onnx(qmodel, path, imgsz, batch, simplify=False, **kw)
    else:
        detector.export_onnx(qmodel, path, imgsz, batch)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    if count_qdq(model)["QuantizeLinear"] == 0:
        raise ExportError(f"{path}: the exporter dropped every Q/DQ node (needs dynamo=False)")
    if not dynamic:  # constant shape arithmetic, as the slimmed fp32 export has (onnx_fold.py)
        model, n = fold_static_shapes(model)
        if n:
            onnx.save(model, str(path))
    return path


def make_deployable(
    detector: Detector, qmodel: nn.Module, route: str, imgsz: int, tag: str, info: dict, bits=8
) -> Deployable:
    """A Deployable whose ``export(dir, batch)`` writes the ONNX ``route`` needs."""

    def export(out_dir: Path, batch: int = 1, dynamic: bool = False) -> Path:
        """``dynamic`` (route qdq): batch, height and width symbolic (rect-mode evaluation)."""
        out_dir = Path(out_dir)
        dynamic = dynamic and route == "qdq"  # TensorRT's dynamic-range route stays static
        stem = f"{detector.name}_int8_{tag}_{imgsz}_b{batch}{'_dyn' if dynamic else ''}"
        qdq = out_dir / f"{stem}_qdq.onnx"
        if not qdq.exists():
            export_qdq(detector, qmodel, qdq, imgsz, batch, dynamic)
        if route == "qdq":
            return qdq
        fp32, js = out_dir / f"{stem}_fp32.onnx", out_dir / f"{stem}_dynamic_range.json"
        if not (fp32.exists() and js.exists()):
            write_dynamic_range(qdq, fp32, js, bits)
        deploy.dynamic_range = js
        return fp32

    deploy = Deployable(
        detector=detector, module=qmodel, precision="int8", route=route, export=export, info=info
    )
    return deploy


def check_weight_observer(cfg: DictConfig) -> str | None:
    """Refuse an activation-only observer as ``observer.weight`` (every native quantizer)."""
    if not observers.get(cfg.observer.weight).weights:
        return f"observer.weight={cfg.observer.weight} calibrates activations only"
    return None


@QUANTIZERS.register("ptq", schema=PTQConfig)
class PTQ:
    consumes: frozenset[str] = frozenset({"observer", "ignore"})

    def check(self, cfg: DictConfig) -> str | None:
        q = cfg.quantizer
        if q.precision != "int8":
            return f"quantizer=ptq makes INT8 models; precision={q.precision} is quantizer=none"
        if q.export not in ("qdq", "dynamic_range"):
            return f"quantizer.export={q.export}: ptq exports qdq or dynamic_range"
        if q.impl not in IMPLS:
            return f"quantizer.impl={q.impl}: one of {', '.join(IMPLS)}"
        if q.export == "dynamic_range" and (int(q.w_bits) != 8 or int(q.a_bits) != 8):
            return "export=dynamic_range is TensorRT's implicit INT8: w_bits and a_bits must be 8"
        if q.impl == "modelopt":
            from qexp.quant import modelopt_ptq

            return modelopt_ptq.check(cfg)
        if q.impl == "mqbench":
            from qexp.quant import mqbench_ptq

            return mqbench_ptq.check(cfg)
        return check_weight_observer(cfg)

    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable:
        cfg = job.cfg
        if cfg.quantizer.impl == "modelopt":
            from qexp.quant import modelopt_ptq

            return modelopt_ptq.quantize(job, detector, data)
        if cfg.quantizer.impl == "mqbench":
            from qexp.quant import mqbench_ptq

            return mqbench_ptq.quantize(job, detector, data)
        return quantize_native(job, detector, data)


def quantize_native(job: Job, detector: Detector, data: EvalData) -> Deployable:
    """prepare -> calibrate (cached) -> set ranges -> Deployable."""
    cfg = job.cfg
    t0 = time.perf_counter()
    c = calibrated(job, detector, data)
    plan = c.plan
    job.log_metrics({"calib_s": c.seconds, "quantize_s": time.perf_counter() - t0})
    tag = content_hash(
        OmegaConf.to_container(cfg.quantizer), OmegaConf.to_container(cfg.observer),
        plan.quantized, n=8,
    )  # fmt: skip
    info = {**c.info(cfg.observer), "calib_images": c.num, "act_amax": c.act_amax()}
    log.info(
        "ptq: %d layers quantized, %d ignored, %d float by design; calibration %s (%.1fs)",
        len(plan.quantized), len(plan.ignored), len(plan.fixed), info["calib_cache"], c.seconds,
    )  # fmt: skip
    return make_deployable(
        detector, c.qmodel, str(cfg.quantizer.export), int(cfg.model.imgsz), tag, info,
        int(cfg.quantizer.a_bits),
    )  # fmt: skip
