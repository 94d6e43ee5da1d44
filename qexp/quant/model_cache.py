"""Trained quantized weights cached on disk (AdaRound roundings, QAT fine-tunes, ModelOpt and
MQBench ranges), so the jobs of a sweep that differ only in backend train once.

An entry is a tensor file plus a JSON, kept by the shared cache protocol (:mod:`qexp.cache`):
:func:`load` claims the entry, so parallel jobs that miss it wait for the one that trains, and
:func:`save` commits it (staged files moved in, the sha256 manifest last). Other files the
caller wrote into the entry between the two calls (MQBench's clip JSON) are part of it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from qexp import cache
from qexp.config.settings import drop_added_defaults
from qexp.quant.calibrate import weights_hash

log = logging.getLogger("qexp")
_STATE, _META = "state.pt", "meta.json"


def quantizer_key(cfg: DictConfig) -> dict:
    """``cfg.quantizer`` without the fields that do not change the trained weights."""
    q = OmegaConf.to_container(cfg.quantizer, resolve=True)
    assert isinstance(q, dict)
    for k in ("device", "export"):
        q.pop(k, None)
    return drop_added_defaults("quantizer", {str(k): v for k, v in q.items()})


def train_images(cfg: DictConfig) -> int:
    """How many calibration images training uses: ``quantizer.images``, else data.calib.num."""
    n = cfg.quantizer.images
    return int(n if n is not None else (OmegaConf.select(cfg, "data.calib.num") or 128))


def key(
    kind: str, version: int, fmodel: nn.Module, cfg: DictConfig, quantized: list[str], images: int
) -> tuple:
    """What a trained entry depends on: the float weights, the calibration data, the observer,
    the quantizer's training settings, the quantized layers and the seed."""
    return (
        kind, version, weights_hash(fmodel), int(cfg.model.imgsz),
        OmegaConf.to_container(cfg.data.calib, resolve=True), images,
        OmegaConf.to_container(cfg.observer, resolve=True), quantizer_key(cfg),
        quantized, int(cfg.seed),
    )  # fmt: skip


def _adopt(names: tuple[str, str]) -> cache.Adopt:
    """Entries of qexp before the shared protocol: both files present (the JSON came last)."""
    return lambda entry: {} if all((entry / n).is_file() for n in names) else None


def save(
    directory: Path, state: dict[str, torch.Tensor], meta: dict, names=(_STATE, _META)
) -> None:
    """Commit the entry :func:`load` claimed: the tensors and ``meta``, then the manifest."""
    directory, (sname, mname) = Path(directory), names
    tmp = cache.staging(directory)
    torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp / sname)
    (tmp / mname).write_text(json.dumps(meta, indent=1))
    cache.commit(directory, tmp, [sname, mname], {"kind": "model"})


def load(directory: Path, names=(_STATE, _META)) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(state, meta) of a whole entry; None when it must be (re)computed: then this process
    holds the entry until :func:`save` (or the job's end), and parallel jobs wait for it."""
    directory, (sname, mname) = Path(directory), names
    if not cache.claim(directory, _adopt(names)):
        return None
    try:
        meta = json.loads((directory / mname).read_text())
        state = torch.load(directory / sname, map_location="cpu", weights_only=True)
        return state, meta
    except (OSError, RuntimeError, ValueError) as e:
        cache.rebuild(directory, f"unreadable: {e}")
        return None
