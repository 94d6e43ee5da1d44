"""The calibration pass: per-layer input statistics from float forward passes, cached on disk.

Statistics are gathered on the float (BN-folded) model, as TensorRT calibrates, for every
quantizable layer whatever the ignore patterns say; so one cache entry serves every observer
and every ignore choice of a (model, data, images, preprocessing) combination.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qexp import cache
from qexp.config.schema import OptionError
from qexp.device import ieee_fp32
from qexp.job import Job
from qexp.quant.histogram import HistAccumulator, HistStats, pack, unpack
from qexp.registry import OBSERVERS

log = logging.getLogger("qexp")
CACHE_VERSION = 1
_ARRAYS = "stats.npz"
# the job artifact of the calibration pass: what `qexp report --calib-tensor` plots
HISTOGRAMS = "calibration"
HISTOGRAMS_FILE = "calibration.json"
HISTOGRAMS_VERSION = 1


def batched(images: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """``(1, C, H, W)`` images -> ``(<=size, C, H, W)`` batches, in order."""
    chunk: list[np.ndarray] = []
    for img in images:
        chunk.append(img)
        if len(chunk) == size:
            yield np.concatenate(chunk)
            chunk = []
    if chunk:
        yield np.concatenate(chunk)


@torch.no_grad()
def collect_stats(
    model: nn.Module,
    layers: Sequence[str],
    images: Iterable[np.ndarray],
    bins: int = 2048,
    track: Callable | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, HistStats]:
    """Run ``images`` through ``model`` on ``device`` and histogram the input of every layer in
    ``layers``. The histograms stay on ``device`` until the pass ends; the model is moved there
    for the pass and back afterwards."""
    device = torch.device(device)
    acc = {n: HistAccumulator(bins=bins) for n in layers}
    hooks = [
        model.get_submodule(n).register_forward_pre_hook(
            lambda _m, args, n=n: acc[n].update(args[0])
        )
        for n in layers
    ]
    home = next(model.parameters(), torch.empty(0)).device
    try:
        model.to(device).eval()
        it = track(images, "calibrating") if track else images
        with ieee_fp32():
            for img in it:
                model(torch.from_numpy(np.ascontiguousarray(img)).float().to(device))
    finally:
        for h in hooks:
            h.remove()
        model.to(home)
    return {n: a.result() for n, a in acc.items()}


def weights_hash(model: nn.Module) -> str:
    """A content hash of the parameters and buffers (what the calibration pass depends on)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _adopt_v1(entry: Path) -> dict | None:
    """An entry of qexp before the shared cache protocol: its own manifest.json (version,
    layer names, sha256 of stats.npz), written last. Whole: its meta; else None."""
    try:
        old = json.loads((entry / cache.MANIFEST).read_text())
        arrays = entry / _ARRAYS
        if old.get("version") != CACHE_VERSION or not arrays.is_file():
            return None
        if cache.file_hash(arrays) != old["sha256"]:
            return None
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return {k: v for k, v in old.items() if k != "sha256"}


def load_stats(directory: Path, layers: Sequence[str]) -> dict[str, HistStats] | None:
    """The stats of a whole entry for exactly ``layers``, else None (missing, partial or
    corrupt: :func:`qexp.cache.problem` says which; or calibrated for other layers)."""
    why = cache.problem(directory)
    if why:
        log.debug("calibration cache %s: %s", directory, why)
        return None
    meta = cache.meta(directory)
    if meta.get("version") != CACHE_VERSION or meta.get("names") != list(layers):
        log.warning("calibration cache %s is for other layers", directory)
        return None
    try:
        with np.load(Path(directory) / _ARRAYS) as z:
            return unpack(meta["names"], {k: z[k] for k in z.files})
    except (OSError, ValueError, KeyError) as e:
        log.warning("calibration cache %s unreadable (%s)", directory, e)
        return None


def cached_stats(
    directory: Path,
    model: nn.Module,
    layers: Sequence[str],
    images: Callable[[], Iterable[np.ndarray]],
    bins: int = 2048,
    track: Callable | None = None,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, HistStats], bool]:
    """(stats, hit): the entry ``directory`` (the shared cache protocol: checked, locked,
    atomic; parallel jobs calibrate once), or calibrate on ``device`` and store it there."""
    built: dict[str, dict[str, HistStats]] = {}
    meta: dict = {"version": CACHE_VERSION, "names": list(layers), "bins": bins}

    def build(tmp: Path) -> list[str]:
        t = time.perf_counter()
        imgs = list(images())
        stats = collect_stats(model, layers, imgs, bins, track, device)
        np.savez(tmp / _ARRAYS, **pack(stats))  # type: ignore[arg-type]
        meta.update(images=len(imgs), seconds=time.perf_counter() - t, device=str(device))
        built["stats"] = stats
        return [_ARRAYS]

    cache.cached(directory, build, meta, adopt=_adopt_v1)
    if "stats" not in built:
        stats = load_stats(directory, layers)
        if stats is not None:
            return stats, True
        cache.rebuild(directory, "statistics of other layers, or unreadable")
        cache.cached(directory, build, meta)
    return built["stats"], False


def stats_device(directory: Path) -> str:
    """The device whose pass produced the cached entry in ``directory`` ("unknown" before the
    manifest recorded it)."""
    try:
        return str(cache.meta(directory).get("device", "unknown"))
    except (OSError, ValueError):
        return "unknown"


def observer_clips(st: HistStats, ocfg: Any, bits: int = 8) -> dict[str, float]:
    """amax of every registered activation observer on these statistics, each with its
    parameters out of ``ocfg`` (the job's observer axis). An observer that ranges weights only
    (no ``act_amax``), or whose own checks refuse these options (``observer.bins=64`` is the
    minmax job's to set, and below what the histogram observer takes), gives no clip."""
    clips = {}
    for entry in OBSERVERS:
        observer = entry.obj()
        try:
            clips[entry.name] = float(observer.act_amax(st, observer.params_of(ocfg), bits))
        except (NotImplementedError, OptionError) as e:
            log.debug("observer %s gives no activation clip here: %s", entry.name, e)
    return clips


def write_histograms(job: Job, stats: dict[str, HistStats]) -> Path:
    """The job artifact ``calibration``: every layer input's |x| histogram from the
    calibration pass and the clip each activation observer picks from it (at
    ``quantizer.a_bits``, with this job's observer settings). Reports read this file, never
    the calibration cache or the observers."""
    s = job.settings
    bits = s.quantizer.a_bits
    tensors = {}
    for name, st in stats.items():
        hist = st.hist.astype(np.int64) if np.all(st.hist == np.rint(st.hist)) else st.hist
        nz = np.flatnonzero(hist)
        tensors[name] = {
            "bins": st.bins,
            "range": st.range,
            "min": st.min,
            "max": st.max,
            "count": st.count,
            "hist": hist[: nz[-1] + 1 if nz.size else 0].tolist(),  # trailing empty bins cut
            "clips": observer_clips(st, s.observer, bits),
        }
    doc = {
        "version": HISTOGRAMS_VERSION,
        "bits": bits,
        "observer": dataclasses.asdict(s.observer),
        "tensors": tensors,
    }
    path = job.path(HISTOGRAMS_FILE)
    path.write_text(json.dumps(doc, separators=(",", ":")))
    job.add_artifact(HISTOGRAMS, path)
    return path
