"""Trained quantized weights cached on disk (AdaRound roundings, QAT fine-tunes, ModelOpt and
MQBench ranges), so the jobs of a sweep that differ only in backend train once.

An entry is a tensor file plus a JSON, kept by the shared cache protocol (:mod:`qexp.cache`):
:func:`load` claims the entry, so parallel jobs that miss it wait for the one that trains, and
:func:`save` commits it (staged files moved in, the sha256 manifest last). Other files the
caller wrote into the entry between the two calls (MQBench's clip JSON) are part of it."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qexp import cache
from qexp.config.schema import DataConfig, QuantizerConfig
from qexp.config.settings import Settings, drop_added_defaults
from qexp.quant.calibrate import weights_hash

log = logging.getLogger("qexp")
_STATE, _META = "state.pt", "meta.json"


def quantizer_key(q: QuantizerConfig) -> dict:
    """The quantizer's settings without the fields that do not change the trained weights."""
    d = dataclasses.asdict(q)
    for k in ("device", "export"):
        d.pop(k, None)
    return drop_added_defaults("quantizer", d)


def train_images(q: Any, data: DataConfig) -> int:
    """How many calibration images training uses: ``quantizer.images`` (a learning quantizer's
    schema has it), else data.calib.num."""
    return int(q.images if q.images is not None else data.calib.num)


def key(
    kind: str, version: int, fmodel: nn.Module, s: Settings, quantized: list[str], images: int
) -> tuple:
    """What a trained entry depends on: the float weights, the calibration data, the observer,
    the quantizer's training settings, the quantized layers and the seed."""
    return (
        kind, version, weights_hash(fmodel), s.model.imgsz, dataclasses.asdict(s.data.calib),
        images, dataclasses.asdict(s.observer), quantizer_key(s.quantizer), quantized, s.seed,
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
