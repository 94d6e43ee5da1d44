"""Calibration statistics of one tensor from a job's cache, and the clip each observer picks.

A PTQ job's calibration pass is cached under ``<paths.cache_dir>/calib/<hash>/`` (one entry
serves every observer). The report finds the entry holding the tensor and, when several do
(two models with the same layer names), keeps the one whose statistics reproduce the amax the
job recorded for it (``info.act_amax``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from qexp.quant.calibrate import load_stats
from qexp.quant.histogram import HistStats
from qexp.registry import OBSERVERS

ACT_OBSERVERS = ("minmax", "percentile", "mse", "entropy", "histogram")


def _job_files(job_dir: Path) -> tuple[dict[str, Any], Any]:
    rec = json.loads((job_dir / "result.json").read_text())
    cfg = OmegaConf.load(job_dir / "config.yaml")
    return rec, cfg


def observer_clips(st: HistStats, ocfg: Any, bits: int = 8) -> dict[str, float]:
    """amax of every activation observer on these statistics (the job's observer settings)."""
    import qexp.quant  # noqa: F401 - registers the observers

    return {name: float(OBSERVERS.get(name)().act_amax(st, ocfg, bits)) for name in ACT_OBSERVERS}


def _candidates(cache_dir: Path, tensor: str) -> list[tuple[Path, list[str]]]:
    out = []
    for manifest in sorted((cache_dir / "calib").glob("*/manifest.json")):
        try:
            names = json.loads(manifest.read_text())["names"]
        except (OSError, ValueError, KeyError):
            continue
        matches = [n for n in names if n == tensor] or [n for n in names if tensor in n]
        if matches:
            out.append((manifest.parent, names))
    return out


def tensor_clips(row: pd.Series, tensor: str) -> tuple[HistStats, dict[str, float], str] | None:
    """(stats, {observer: amax}, layer name) for ``tensor`` as calibrated for this job."""
    if not row.get("job_dir"):
        return None
    job_dir = Path(str(row["job_dir"]))
    if not (job_dir / "result.json").exists() or not (job_dir / "config.yaml").exists():
        return None
    rec, cfg = _job_files(job_dir)
    recorded = (rec.get("info") or {}).get("act_amax") or {}
    if not recorded:
        return None  # not a job that calibrated (fp32/fp16 baselines)
    cache_dir = Path(str(OmegaConf.select(cfg, "paths.cache_dir", default="outputs/cache")))
    bits = int(OmegaConf.select(cfg, "quantizer.a_bits", default=8))
    act = str(OmegaConf.select(cfg, "observer.act", default="minmax"))
    for directory, names in _candidates(cache_dir, tensor):
        name = tensor if tensor in names else next(n for n in names if tensor in n)
        stats = load_stats(directory, names)
        if stats is None or name not in stats:
            continue
        clips = observer_clips(stats[name], cfg.observer, bits)
        want = recorded.get(name)
        if want is None or math.isclose(clips[act], float(want), rel_tol=1e-4, abs_tol=1e-5):
            return stats[name], clips, name
    return None
