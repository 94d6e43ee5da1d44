"""quantizer=ptq_modelopt: NVIDIA ModelOpt's INT8 PTQ in the same axes as ours.

``observer.act`` picks ModelOpt's calibrator: minmax -> ``max``; entropy, percentile and mse ->
its histogram calibrator with that method. Weights: per-channel ``max`` (axis 0), ModelOpt's
INT8 default. ``ignore`` patterns become ModelOpt's ``quantizer_name`` wildcards; DFL stays
float as in our route. ModelOpt places quantizers on Conv/Linear inputs and weights only (no
residual-add quantizers). The calibrated amaxes are cached on disk, so the jobs of a sweep
that differ only in backend calibrate once. ModelOpt is an optional extra: without it the job
is SKIPPED.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from qexp.config.schema import Export, Impl
from qexp.config.settings import Settings
from qexp.contracts import Precision, Route, outputs
from qexp.device import ieee_fp32
from qexp.interfaces import Deployable, Detector, EvalData
from qexp.job import Job, content_hash
from qexp.quant import model_cache
from qexp.quant.calibrate import batched, weights_hash
from qexp.quant.deployable import make_deployable
from qexp.quant.ignore import select_ignored
from qexp.quant.pipeline import FakeQuantQuantizer, PTQConfig
from qexp.quant.placement import quantizable
from qexp.quant.plugins.guard import missing
from qexp.quant.qdq_rules import QdqRules
from qexp.quant.steps import float_twin, quant_device
from qexp.registry import QUANTIZERS

log = logging.getLogger("qexp")
METHODS = {"minmax": "max", "entropy": "entropy", "percentile": "percentile", "mse": "mse"}
# ModelOpt's histogram keeps the bin width its first forward sets and appends bins as the range
# grows; fed one image at a time, yolov8n's histograms reached 3300 bins (median) to 11400, and
# the KL search, quadratic in bins and pure Python, took 13 min. Batches of 16 keep them near
# 2048 bins (max 3400) and the search near 3 s per quantizer. Max calibration does not depend
# on batching (up to the last bits a batched convolution changes).
CALIB_BATCH = 16


@dataclass
class ModelOptConfig(PTQConfig):
    name: str = "ptq_modelopt"
    impl: Impl = Impl.modelopt
    export: Export = Export.qdq
    IMPL = Impl.modelopt


def check(q: PTQConfig, s: Settings) -> str | None:
    if q.qdq_rules != QdqRules.none:
        return "quantizer=ptq_modelopt places ModelOpt's own quantizers: qdq_rules=none only"
    if why := missing("modelopt", "quantizer=ptq_modelopt needs NVIDIA ModelOpt", "modelopt"):
        return why
    if s.observer.act not in METHODS:
        return f"quantizer=ptq_modelopt has no calibrator for observer.act={s.observer.act}"
    if s.observer.weight != "minmax":
        return "quantizer=ptq_modelopt calibrates weights with max only (observer.weight=minmax)"
    if q.w_bits != 8 or q.a_bits != 8:
        return "quantizer=ptq_modelopt: this route is INT8 only (w_bits=a_bits=8)"
    return None


def modelopt_config(method: str, ignored: list[str], fixed: list[str], per_channel: bool) -> dict:
    """ModelOpt's quant_cfg list (0.4x format) for our INT8 scheme."""
    act: dict[str, Any] = {"num_bits": 8, "axis": None}
    if method != "max":
        act["calibrator"] = "histogram"
    quant_cfg = [
        {"quantizer_name": "*", "enable": False},
        {
            "quantizer_name": "*weight_quantizer",
            "cfg": {"num_bits": 8, "axis": 0 if per_channel else None},
        },
        {"quantizer_name": "*input_quantizer", "cfg": act},
    ]
    quant_cfg += [{"quantizer_name": f"{n}.*", "enable": False} for n in [*ignored, *fixed]]
    return {"quant_cfg": quant_cfg, "algorithm": None}


@torch.no_grad()
def calibrate_modelopt(
    model: torch.nn.Module,
    images,
    method: str,
    percentile: float,
    batch: int = CALIB_BATCH,
    device: torch.device | str = "cpu",
) -> None:
    """One pass collecting ModelOpt's stats (on ``device``; the model is back on the CPU
    afterwards, for export), then each quantizer loads its amax by ``method``."""
    from modelopt.torch.quantization.model_calib import enable_stats_collection

    enable_stats_collection(model)
    try:
        model.to(device)
        with ieee_fp32():
            for x in batched(images, batch):
                model(torch.from_numpy(x).to(device))
    finally:
        model.cpu()
    for q in _quantizers(model).values():
        cal = getattr(q, "_calibrator", None)
        if cal is not None:
            if type(cal).__name__ == "HistogramCalibrator":
                kw = {"percentile": percentile} if method == "percentile" else {}
                q.load_calib_amax(method, **kw)
            else:
                q.load_calib_amax()
        q.enable_quant()
        q.disable_calib()


def _quantizers(model: torch.nn.Module) -> dict[str, Any]:
    """Name -> every enabled ModelOpt TensorQuantizer of ``model``."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    return {
        n: q for n, q in model.named_modules() if isinstance(q, TensorQuantizer) and not q._disabled
    }


def amax_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The calibrated amax of every enabled quantizer (what calibration decided)."""
    return {n: q.amax.detach().clone() for n, q in _quantizers(model).items() if q.amax is not None}


@torch.no_grad()
def load_amax_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Calibrated state from :func:`amax_state`: amaxes set, quantization on, calibration off."""
    quantizers = _quantizers(model)
    if not set(state) <= set(quantizers):
        raise KeyError(
            f"cached ModelOpt amaxes for absent quantizers: {set(state) - set(quantizers)}"
        )
    for n, q in quantizers.items():
        if n in state:
            q.amax = state[n]
        q.enable_quant()
        q.disable_calib()


@QUANTIZERS.register("ptq_modelopt", schema=ModelOptConfig)
class ModelOptPTQ(FakeQuantQuantizer[ModelOptConfig]):
    produces = outputs([Precision.int8], [Route.qdq])

    def check(self, s: Settings) -> str | None:
        return check(self.cfg, s)

    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable:
        return quantize(job, detector, data, self.cfg)


def quantize(job: Job, detector: Detector, data: EvalData, q: PTQConfig) -> Deployable:
    import modelopt.torch.quantization as mtq

    s = job.settings
    t0 = time.perf_counter()
    imgsz = s.model.imgsz
    method = METHODS[s.observer.act]
    model = float_twin(detector.module)  # BN folded first, as in our route and TensorRT
    layers, fixed = quantizable(model)
    ignored = select_ignored(list(s.ignore.patterns), model, layers)
    mcfg = modelopt_config(method, ignored, fixed, q.per_channel)
    num = s.data.calib.num
    key = (
        "modelopt", importlib.metadata.version("nvidia-modelopt"), weights_hash(model), imgsz,
        dataclasses.asdict(s.data.calib), num, CALIB_BATCH, mcfg, s.observer.percentile,
    )  # fmt: skip
    model = mtq.quantize(model, mcfg)  # inserts quantizers; calibration below
    directory = job.cache("modelopt", *key)
    cached = model_cache.load(directory)
    t = time.perf_counter()
    if cached is not None:
        load_amax_state(model, cached[0])
        log.info("modelopt: calibrated amaxes loaded from the cache %s", directory)
    else:
        images = data.calibration(imgsz, num)
        calibrate_modelopt(
            model, job.track(images, "modelopt calibration"), method, s.observer.percentile,
            device=quant_device(job),
        )  # fmt: skip
        model_cache.save(directory, amax_state(model), {"seconds": time.perf_counter() - t})
    calib_s = time.perf_counter() - t
    job.log_metrics({"calib_s": calib_s, "quantize_s": time.perf_counter() - t0})
    quantized = [n for n in layers if n not in ignored]
    info = {
        "quantized": quantized,
        "ignored": ignored,
        "float_by_design": fixed,
        "observer": {"act": s.observer.act, "weight": "minmax", "modelopt_method": method},
        "impl": "modelopt",
        "calib_cache": "hit" if cached is not None else "miss",
    }
    tag = "mo_" + content_hash(method, ignored, s.observer.percentile, n=8)
    return make_deployable(detector, model, Route.qdq, imgsz, tag, info)
