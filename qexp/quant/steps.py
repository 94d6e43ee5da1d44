"""The steps of post-training quantization, each usable on its own: ``prepare_model`` (fold BN,
swap in fake-quant layers) -> ``calibrate`` (cached statistics) -> ``set_ranges`` (observers
freeze the scales). :mod:`qexp.quant.pipeline` runs them with a job's settings; the
sensitivity analysis and the third-party quantizers use them directly.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, cast

import torch
from torch import nn

from qexp.device import describe, resolve_device
from qexp.interfaces import EvalData
from qexp.job import Job
from qexp.quant.calibrate import (
    CACHE_VERSION,
    cached_stats,
    stats_device,
    weights_hash,
    write_histograms,
)
from qexp.quant.fakequant import ActQuantizer, quant_layers
from qexp.quant.fold import fold_batchnorm
from qexp.quant.histogram import HistStats, merge
from qexp.quant.ignore import select_ignored
from qexp.quant.placement import QuantPlan, prepare, quantizable
from qexp.quant.qdq_rules import QdqRules
from qexp.registry import OBSERVERS


def float_twin(module: nn.Module, fold_bn: bool = True) -> nn.Module:
    """A float32 eval copy of ``module`` with BatchNorm folded (the calibration model)."""
    model = copy.deepcopy(module).float().eval()
    if fold_bn:
        fold_batchnorm(model)
    return model


def prepare_model(
    module: nn.Module,
    ignore_patterns,
    qcfg: Any,
    fold_bn: bool = True,
    rules: str | None = None,
) -> tuple[nn.Module, nn.Module, QuantPlan]:
    """(float BN-folded model, its fake-quant twin, plan). Quantizers start disabled.

    ``qcfg``: a quantizer schema (bits, per_channel, and ``residual`` and ``qdq_rules`` where
    it has them); ``rules`` overrides its ``qdq_rules``."""
    fmodel = float_twin(module, fold_bn)
    layers, _ = quantizable(fmodel)
    ignored = select_ignored(list(ignore_patterns), fmodel, layers)
    qmodel = copy.deepcopy(fmodel)
    plan = prepare(
        qmodel,
        ignored,
        w_bits=qcfg.w_bits,
        a_bits=qcfg.a_bits,
        per_channel=qcfg.per_channel,
        residual=getattr(qcfg, "residual", True),
        rules=rules if rules is not None else getattr(qcfg, "qdq_rules", QdqRules.none),
    )
    return fmodel, qmodel, plan


def quant_device(job: Job) -> torch.device:
    """The device of this job's quantizer work (``quantizer.device``), recorded in its info."""
    device = resolve_device(job.settings.quantizer.device)
    job.info["quant_device"] = describe(device)
    return device


def calibrate(
    job: Job, fmodel: nn.Module, data: EvalData, imgsz: int, num: int | None, bins: int
) -> tuple[dict[str, HistStats], float, bool]:
    """(stats per layer input, seconds, cache hit) for every quantizable layer of ``fmodel``,
    computed on ``quantizer.device``."""
    layers, _ = quantizable(fmodel)
    calib = dataclasses.asdict(job.settings.data.calib)
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
    qmodel: nn.Module, plan: QuantPlan, stats: dict[str, HistStats], ocfg: Any
) -> dict[str, float]:
    """Freeze scales: ``observer.act`` on the stats, ``observer.weight`` on the weights
    (``ocfg``: the observer axis, each observer reading its own parameters out of it).

    Returns the activation amax per layer."""
    act, weight = OBSERVERS.get(ocfg.act)(), OBSERVERS.get(ocfg.weight)()
    act_params, weight_params = act.params_of(ocfg), weight.params_of(ocfg)
    amaxes = {}
    for name, layer in quant_layers(qmodel).items():
        qa = layer.input_quantizer
        amaxes[name] = act.act_amax(stats[name], act_params, qa.bits)
        qa.set_amax(amaxes[name])
        wq = layer.weight_quantizer
        w = cast(torch.Tensor, layer.weight)
        wq.set_amax(weight.weight_amax(w, weight_params, wq.bits, wq.per_channel))
    for block, first in plan.residual.items():
        cast(ActQuantizer, qmodel.get_submodule(block).residual_quantizer).set_amax(amaxes[first])
    for group in plan.shared:  # qdq_rules=trt: the observer on what the whole group reads
        shared = cast(ActQuantizer, qmodel.get_submodule(group.quantizers[0]))
        amax = act.act_amax(merge([stats[n] for n in group.stats]), act_params, shared.bits)
        shared.set_amax(amax)
        for path in group.quantizers:
            owner, _, attr = path.rpartition(".")
            if attr == "input_quantizer":
                amaxes[owner] = amax
    return amaxes
