"""The calibration pass: per-layer input statistics from float forward passes, cached on disk.

Statistics are gathered on the float (BN-folded) model, as TensorRT calibrates, for every
quantizable layer whatever the ignore patterns say; so one cache entry serves every observer
and every ignore choice of a (model, data, images, preprocessing) combination.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qexp.device import ieee_fp32
from qexp.quant.histogram import HistAccumulator, HistStats, pack, unpack

log = logging.getLogger("qexp")
CACHE_VERSION = 1
_MANIFEST = "manifest.json"
_ARRAYS = "stats.npz"


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


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_stats(directory: Path, stats: dict[str, HistStats], meta: dict) -> None:
    """Write arrays, then the manifest naming their hash (the manifest marks a complete entry)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{_ARRAYS}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **pack(stats))  # type: ignore[arg-type]
    os.replace(tmp, directory / _ARRAYS)
    manifest = {
        "version": CACHE_VERSION,
        "names": list(stats),
        "sha256": _sha(directory / _ARRAYS),
        **meta,
    }
    tmpm = directory / f".{_MANIFEST}.{os.getpid()}.tmp"
    tmpm.write_text(json.dumps(manifest, indent=1))
    os.replace(tmpm, directory / _MANIFEST)


def load_stats(directory: Path, layers: Sequence[str]) -> dict[str, HistStats] | None:
    """The cached stats, or None when the entry is missing, partial, corrupt or for other
    layers (the caller then recalibrates and overwrites it)."""
    mpath, apath = directory / _MANIFEST, directory / _ARRAYS
    if not mpath.exists():
        return None
    try:
        manifest = json.loads(mpath.read_text())
        if manifest.get("version") != CACHE_VERSION or manifest["names"] != list(layers):
            log.warning("calibration cache %s is for other layers; recalibrating", directory)
            return None
        if not apath.exists() or _sha(apath) != manifest["sha256"]:
            log.warning("calibration cache %s is corrupt or partial; recalibrating", directory)
            return None
        with np.load(apath) as z:
            return unpack(manifest["names"], {k: z[k] for k in z.files})
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        log.warning("calibration cache %s unreadable (%s); recalibrating", directory, e)
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
    """(stats, hit): load from ``directory`` or calibrate on ``device`` and store there."""
    stats = load_stats(directory, layers)
    if stats is not None:
        return stats, True
    t = time.perf_counter()
    imgs = list(images())
    stats = collect_stats(model, layers, imgs, bins, track, device)
    meta = {"images": len(imgs), "bins": bins, "seconds": time.perf_counter() - t}
    save_stats(directory, stats, {**meta, "device": str(device)})
    return stats, False


def stats_device(directory: Path) -> str:
    """The device whose pass produced the cached entry in ``directory`` ("unknown" before the
    manifest recorded it)."""
    try:
        return str(json.loads((directory / _MANIFEST).read_text()).get("device", "unknown"))
    except (OSError, ValueError):
        return "unknown"
