"""Exported ONNX cached by content: the same weights, shape, route and quantizer reuse one file.

Exporting (and simplifying) takes seconds per job; a sweep over backends or latency settings
would redo it for nothing. The key holds everything the exported graph depends on: the
weights file's hash, imgsz, batch, the route and precision, the quantizer config, and for
quantized routes the observer / calibrator / ignore choices and the calibration split.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from qexp.job import file_hash

if TYPE_CHECKING:
    from qexp.interfaces import Deployable
    from qexp.job import Job

log = logging.getLogger("qexp")
EXPORT_VERSION = 1  # bump when qexp's export itself changes what it writes
_MARKER = "export.json"


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return ""


def export_key(cfg: Any, deploy: Deployable, batch: int) -> dict[str, Any]:
    weights = str(cfg.model.weights)
    key: dict[str, Any] = {
        "weights": file_hash(Path(weights)) if Path(weights).is_file() else weights,
        "family": str(cfg.model.family),
        "imgsz": int(cfg.model.imgsz),
        "batch": int(batch),
        "route": deploy.route,
        "precision": deploy.precision,
        "quantizer": _plain(cfg.quantizer),
        "versions": [EXPORT_VERSION, _version("torch"), _version("ultralytics"), _version("onnx")],
    }
    if deploy.route != "float":
        for axis in ("observer", "calibrator", "ignore"):
            key[axis] = _plain(cfg.get(axis))
        key["calib"] = _plain(cfg.data.get("calib"))
        key["seed"] = _plain(cfg.get("seed"))
    return key


def _call_export(deploy: Deployable, out_dir: Path, batch: int) -> Path:
    params = inspect.signature(deploy.export).parameters
    if "batch" in params:
        return Path(deploy.export(out_dir, batch=batch))  # type: ignore[call-arg]
    if batch != 1:
        raise TypeError(
            f"this {deploy.route} Deployable's export takes no batch; data.batch={batch}"
        )
    return Path(deploy.export(out_dir))


def cached_export(job: Job, deploy: Deployable, batch: int = 1) -> Path:
    """The ONNX for ``deploy`` from the cache, exported on a miss (files land atomically)."""
    d = job.cache("onnx", export_key(job.cfg, deploy, batch))
    marker = d / _MARKER
    if marker.is_file():
        names = json.loads(marker.read_text())
        path = d / names["onnx"]
        if path.is_file():
            log.info("reusing exported ONNX %s", path)
            return path
    tmp = d / f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        out = _call_export(deploy, tmp, batch)
        if not out.is_file():
            raise FileNotFoundError(f"the {deploy.route} export wrote no ONNX at {out}")
        if out.resolve().parent != tmp.resolve():
            shutil.copy2(out, tmp / out.name)  # an export that wrote elsewhere
        files = [p for p in tmp.iterdir() if p.is_file()]
        for p in files:
            os.replace(p, d / p.name)
        # side files (a dynamic-range JSON, external data) stay beside it; the marker comes last
        note = tmp / _MARKER
        note.write_text(json.dumps({"onnx": out.name, "files": sorted(p.name for p in files)}))
        os.replace(note, marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return d / out.name
