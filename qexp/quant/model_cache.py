"""Trained quantized weights cached on disk (AdaRound roundings, QAT fine-tunes), so the jobs
of a sweep that differ only in backend train once. An entry is a tensor file plus a JSON
written last: a directory without the JSON is incomplete and is recomputed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from qexp.quant.calibrate import weights_hash

log = logging.getLogger("qexp")
_STATE, _META = "state.pt", "meta.json"


def quantizer_key(cfg: DictConfig) -> dict:
    """``cfg.quantizer`` without the fields that do not change the trained weights."""
    q = OmegaConf.to_container(cfg.quantizer, resolve=True)
    assert isinstance(q, dict)
    for k in ("device", "export"):
        q.pop(k, None)
    return q


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


def save(
    directory: Path, state: dict[str, torch.Tensor], meta: dict, names=(_STATE, _META)
) -> None:
    directory, (sname, mname) = Path(directory), names
    tmp = directory / f"{sname}.tmp"
    torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
    tmp.replace(directory / sname)
    tmpm = directory / f"{mname}.tmp"
    tmpm.write_text(json.dumps(meta, indent=1))
    tmpm.replace(directory / mname)


def load(directory: Path, names=(_STATE, _META)) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(state, meta), or None when the entry is missing, incomplete or unreadable."""
    directory, (sname, mname) = Path(directory), names
    if not (directory / mname).exists() or not (directory / sname).exists():
        return None
    try:
        meta = json.loads((directory / mname).read_text())
        state = torch.load(directory / sname, map_location="cpu", weights_only=True)
        return state, meta
    except (OSError, RuntimeError, ValueError) as e:
        log.warning("model cache %s unreadable (%s); recomputing", directory, e)
        return None
