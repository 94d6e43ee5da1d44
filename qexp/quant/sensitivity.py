"""Per-layer quantization sensitivity, and ``ignore=sensitivity_topk`` (partial quantization).

The model is quantized as ``quantizer=ptq`` does (same observer, bits, residual quantizers);
then each quantizable layer is, in turn, the only one quantized (mode ``single``) and the only
one left float (mode ``all_but_one``). Every run is scored on labelled calibration images
(coco128 by default: never the eval images, so choosing layers does not peek at the test set)
by four metrics against the float model: mAP50-95, and the output's MSE, cosine similarity and
SQNR (dB). One forward pass per run serves all four. A layer's *sensitivity* is oriented so
that larger means "keeping this layer float helps more" (see :func:`scores`).

``ignore=sensitivity_topk ignore.k=N ignore.metric=M`` keeps the top N layers by metric M in
float. The analysis is cached by content (weights, images, quantization settings), so a
sweep over k or over quantizers runs it once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from qexp import cache
from qexp.config.schema import ObserverConfig
from qexp.config.settings import Settings
from qexp.device import ieee_fp32
from qexp.interfaces import Detector, EvalData
from qexp.job import Job
from qexp.progress import track as plain_track
from qexp.quant import partial_forward
from qexp.quant.calibrate import weights_hash
from qexp.quant.fakequant import ActQuantizer, Quantizer, quant_layers
from qexp.quant.placement import QuantPlan
from qexp.quant.qdq_rules import QdqRules
from qexp.quant.sensitivity_rank import METRICS, MODES, ranking, scores
from qexp.quant.sensitivity_report import ARTIFACTS, write_artifacts
from qexp.quant.steps import calibrate, prepare_model, quant_device, set_ranges
from qexp.registry import OBSERVERS

__all__ = ["METRICS", "MODES", "analyze", "ignore_patterns", "ranking", "scores"]
log = logging.getLogger("qexp")
_RESULT = "sensitivity.json"  # the analysis; its CSV, summary and plot beside it
CACHE_VERSION = 2  # 2: output metrics on channel-standardised outputs


def units(qmodel: nn.Module, plan: QuantPlan) -> dict[str, list[Quantizer]]:
    """Layer -> the quantizers that make it quantized: its input and weight quantizers, and the
    residual quantizer that shares its input (it exists only when the layer is quantized)."""
    out = {n: [m.input_quantizer, m.weight_quantizer] for n, m in quant_layers(qmodel).items()}
    for block, first in plan.residual.items():
        out[first].append(cast(ActQuantizer, qmodel.get_submodule(block).residual_quantizer))
    return out


def set_quantized(u: dict[str, list[Quantizer]], on: set[str]) -> None:
    for name, quantizers in u.items():
        for q in quantizers:
            q.enabled = name in on


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


@torch.no_grad()
def raw_outputs(model: nn.Module, images: Sequence[np.ndarray], detector: Detector) -> np.ndarray:
    """The raw outputs of ``images`` (each (1,3,S,S)), stacked on the batch axis."""
    model.eval()
    dev = _device(model)
    outs = [
        detector.raw(model(torch.from_numpy(im).to(dev))).float().cpu().numpy() for im in images
    ]
    return np.concatenate(outs)


def _resumed(model, images, detector, start: int, caches: list | None) -> tuple[np.ndarray, list]:
    """Raw outputs, replaying blocks from ``start`` on each image's cached block outputs (run
    on the model's device, where the cached outputs stay)."""
    model.eval()
    dev = _device(model)
    raws, outs = [], []
    for j, im in enumerate(images):
        cache = caches[j] if caches is not None else None
        y, blocks_out = partial_forward.run(model, torch.from_numpy(im).to(dev), start, cache)
        raws.append(detector.raw(y).float().cpu().numpy())
        outs.append(blocks_out)
    return np.concatenate(raws), outs


def channel_axis(raw: np.ndarray, num_classes: int) -> int:
    """The axis of a raw output holding box + class channels (4 + nc, or 5 + nc with objectness)."""
    for ax in range(1, raw.ndim):
        if raw.shape[ax] in (4 + num_classes, 5 + num_classes):
            return ax
    return raw.ndim - 1


def output_metrics(ref: np.ndarray, out: np.ndarray, axis: int = -1) -> dict[str, float]:
    """MSE, cosine similarity and SQNR (dB) of ``out`` against ``ref``, with every output channel
    (along ``axis``) divided by the reference's standard deviation of that channel: raw outputs
    mix box coordinates in pixels with scores in 0..1, and unscaled, the boxes alone would
    decide all three. MSE is over every value; cosine and SQNR are per image, averaged (a
    global SQNR would only restate the MSE)."""
    axis = axis % ref.ndim
    dims = tuple(d for d in range(ref.ndim) if d != axis)
    std = ref.astype(np.float64).std(axis=dims, keepdims=True) + 1e-6
    r = (ref / std).reshape(len(ref), -1)
    o = (out / std).reshape(len(out), -1)
    err = ((o - r) ** 2).sum(1)
    cos = (r * o).sum(1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1) + 1e-30)
    sqnr = 10 * np.log10((r**2).sum(1) / np.maximum(err, 1e-30))
    return {
        "mse": float(err.sum() / r.size),
        "cosine": float(cos.mean()),
        "sqnr": float(np.minimum(sqnr, 200.0).mean()),
    }


def map_letterboxed(
    raw: np.ndarray, labels: Sequence[np.ndarray], detector: Detector, imgsz: int
) -> float:
    """mAP50-95 of raw outputs against YOLO labels, both in the letterboxed S x S frame."""
    from qexp.eval.coco_metrics import coco_map

    images: list[dict] = []
    anns: list[dict] = []
    dets: list[dict] = []
    for i, (lab, d) in enumerate(zip(labels, detector.decode(raw), strict=True), start=1):
        images.append({"id": i, "width": imgsz, "height": imgsz, "file_name": f"{i}.jpg"})
        for c, cx, cy, w, h in np.asarray(lab, np.float64).reshape(-1, 5):
            box = [(cx - w / 2) * imgsz, (cy - h / 2) * imgsz, w * imgsz, h * imgsz]
            anns.append(
                {"id": len(anns) + 1, "image_id": i, "category_id": int(c) + 1, "bbox": box,
                 "area": box[2] * box[3], "iscrowd": 0}
            )  # fmt: skip
        for x1, y1, x2, y2, conf, c in np.asarray(d, np.float64).reshape(-1, 6):
            dets.append(
                {"image_id": i, "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                 "score": conf}
            )  # fmt: skip
    cats = [{"id": c + 1, "name": str(c)} for c in range(int(detector.num_classes))]
    gt = {"images": images, "annotations": anns, "categories": cats}
    return coco_map(gt, dets)["map50_95"]


def _score_run(raw, ref, labels, detector, imgsz) -> dict[str, float]:
    axis = channel_axis(ref, int(detector.num_classes))
    return {"map": map_letterboxed(raw, labels, detector, imgsz), **output_metrics(ref, raw, axis)}


def analyze(
    fmodel: nn.Module,
    qmodel: nn.Module,
    plan: QuantPlan,
    samples: Sequence[tuple[np.ndarray, np.ndarray]],
    detector: Detector,
    imgsz: int,
    modes: Sequence[str] = MODES,
    track: Callable = plain_track,
) -> dict:
    """Score every layer in every mode. ``qmodel`` must have its ranges set; it is left with
    every layer quantized. Both models run where they are (one device)."""
    images = [s[0] for s in samples]
    labels = [s[1] for s in samples]
    u = units(qmodel, plan)
    names = list(u)
    # blocks before a layer's own block compute what the reference run computed: resume there
    ref, float_blocks = _resumed(fmodel, images, detector, 0, None)
    set_quantized(u, set(names))
    full, quant_blocks = _resumed(qmodel, images, detector, 0, None)
    can_resume = float_blocks[0] is not None
    reference = {
        "float": {"map": map_letterboxed(ref, labels, detector, imgsz)},
        "quantized": _score_run(full, ref, labels, detector, imgsz),
    }
    rows = []
    runs = [(mode, n) for mode in modes for n in names]
    for mode, name in track(runs, "sensitivity", total=len(runs)):
        set_quantized(u, {name} if mode == "single" else set(names) - {name})
        start = partial_forward.block_of(name, qmodel) if can_resume else 0
        caches = float_blocks if mode == "single" else quant_blocks
        raw, _ = _resumed(qmodel, images, detector, start, caches if start else None)
        rows.append({"layer": name, "mode": mode, **_score_run(raw, ref, labels, detector, imgsz)})
    set_quantized(u, set(names))
    return {"layers": names, "reference": reference, "rows": rows, "images": len(images)}


def _adopt_v1(entry: Path) -> dict | None:
    """Entries of qexp before the shared cache protocol: whole when sensitivity.json (written
    last) is there."""
    return {} if (entry / _RESULT).is_file() else None


def ranking_observer(s: Settings) -> ObserverConfig:
    """The observer the layers are ranked with: ``ignore.rank_observer`` at its defaults (one
    ranking for jobs of any observer: a search's trials share it), else the job's own."""
    name = s.ignore.rank_observer
    if name is None:
        return s.observer
    schema = OBSERVERS.entry(name).schema or ObserverConfig
    return schema(name=name, act=name)


def cached_analysis(job: Job, detector: Detector, data: EvalData, images: int) -> tuple[dict, str]:
    """The analysis for this job's model, data and quantization settings (computed once)."""
    s = job.settings
    observer = ranking_observer(s)
    q, imgsz = s.quantizer, s.model.imgsz
    # layers are ranked with a quantizer each (qdq_rules=none): "this layer alone quantized"
    # has no meaning where quantizers are tied, and one ranking then serves both rules
    fmodel, qmodel, plan = prepare_model(
        detector.module, [], q, getattr(q, "fold_bn", True), rules=QdqRules.none
    )
    qkey = {
        k: getattr(q, k, None) for k in ("w_bits", "a_bits", "per_channel", "residual", "fold_bn")
    }
    key = (
        "sensitivity", CACHE_VERSION, weights_hash(fmodel), imgsz,
        dataclasses.asdict(s.data.calib), images, qkey, dataclasses.asdict(observer),
    )  # fmt: skip
    directory = job.cache("sensitivity", *key)
    built: dict[str, dict] = {}

    def build(tmp: Path) -> list[str]:
        stats, _, _ = calibrate(job, fmodel, data, imgsz, s.data.calib.num, observer.bins)
        set_ranges(qmodel, plan, stats, observer)
        samples = list(data.calibration_samples(imgsz, images))  # type: ignore[attr-defined]
        t = time.perf_counter()
        device = quant_device(job)
        # float32 as on the CPU (no TF32): the scores rank layers, and the cache serves any
        # device
        with ieee_fp32():
            f, q = fmodel.to(device), qmodel.to(device)
            result = analyze(f, q, plan, samples, detector, imgsz, MODES, job.track)
        result["seconds"] = time.perf_counter() - t
        result["device"] = str(device)
        write_artifacts(result, tmp)
        (tmp / _RESULT).write_text(json.dumps(result, indent=1))
        built["result"] = result
        return [_RESULT, *ARTIFACTS.values()]

    cache.cached(directory, build, {"kind": "sensitivity"}, _adopt_v1)
    if "result" in built:
        return built["result"], str(directory)
    try:
        return json.loads((directory / _RESULT).read_text()), str(directory)
    except (OSError, ValueError) as e:
        cache.rebuild(directory, f"unreadable {_RESULT}: {e}")
        cache.cached(directory, build, {"kind": "sensitivity"})
        return built["result"], str(directory)


def ignore_patterns(job: Job, detector: Detector, data: EvalData) -> list[str]:
    """The ignore patterns of this job: ``ignore.patterns``, plus, for
    ``ignore=sensitivity_topk``, the top ``ignore.k`` layers by ``ignore.metric``."""
    ig = job.settings.ignore
    patterns = list(ig.patterns)
    if ig.name != "sensitivity_topk":
        return patterns
    k, metric, mode = ig.k, str(ig.metric), str(ig.mode)
    result, directory = cached_analysis(job, detector, data, ig.images)
    top = ranking(result, mode, metric)[:k]
    job.info["sensitivity_topk"] = {
        "k": k, "metric": metric, "mode": mode, "images": result["images"], "layers": top,
        "observer": ranking_observer(job.settings).name, "cache": directory,
    }  # fmt: skip
    for name, file in ARTIFACTS.items():
        job.add_artifact(f"sensitivity_{name}", f"{directory}/{file}", copy=True)
    log.info("sensitivity_topk: keeping %d layers float by %s (%s): %s", k, metric, mode, top)
    return patterns + [p for p in top if p not in patterns]
