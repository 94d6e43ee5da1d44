"""Exported ONNX cached by content: the same weights, shape, route and quantizer reuse one file.

Exporting (and simplifying) takes seconds per job; a sweep over backends or latency settings
would redo it for nothing. The key holds everything the exported graph depends on: the
weights file's hash, imgsz, batch, the route and precision, the quantizer config, and for
quantized routes the observer / calibrator / ignore choices and the calibration split.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import inspect
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qexp import cache
from qexp.config.axes import QUANT_ONLY_AXES

if TYPE_CHECKING:
    from qexp.config.settings import Settings
    from qexp.interfaces import Deployable
    from qexp.job import Job

log = logging.getLogger("qexp")
EXPORT_VERSION = 2  # bump when qexp's export itself changes what it writes


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return ""


@functools.cache
def _code_fingerprint() -> str:
    """Hash of the sources that shape an exported graph (model families, quantizers), so an
    edited quantizer never reuses a stale Q/DQ file from the cache."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for sub in ("models", "quant"):
        for f in sorted((root / sub).rglob("*.py")):
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def export_key(
    s: Settings, deploy: Deployable, batch: int, dynamic: bool = False
) -> dict[str, Any]:
    """What the exported graph depends on (``s``: the job's settings)."""
    weights = s.model.weights
    key: dict[str, Any] = {
        "weights": cache.file_hash(Path(weights), 16) if Path(weights).is_file() else weights,
        "family": s.model.family,
        "imgsz": s.model.imgsz,
        "batch": int(batch),
        "route": deploy.route,
        "precision": deploy.precision,
        "quantizer": dataclasses.asdict(s.quantizer),
        "versions": [EXPORT_VERSION, _version("torch"), _version("ultralytics"), _version("onnx")],
        "code": _code_fingerprint(),
    }
    if dynamic:  # only then: static exports keep the keys (and cache entries) they had
        key["dynamic"] = True
    for f in dataclasses.fields(s.model):  # options added since (end2end, split_c2f, ...)
        value = getattr(s.model, f.name)
        if f.metadata.get("added") and value != f.default:  # at their default: as before
            key[f"model.{f.name}"] = value
    if deploy.route != "float":
        for axis in QUANT_ONLY_AXES:
            key[axis] = dataclasses.asdict(getattr(s, axis))
        key["calib"] = dataclasses.asdict(s.data.calib)
        key["seed"] = s.seed
    return key


def exports_dynamic(deploy: Deployable) -> bool:
    """Whether ``deploy.export`` can write symbolic height/width (``dynamic=True``)."""
    return "dynamic" in inspect.signature(deploy.export).parameters


def _call_export(deploy: Deployable, out_dir: Path, batch: int, dynamic: bool = False) -> Path:
    params = inspect.signature(deploy.export).parameters
    if dynamic:
        return Path(deploy.export(out_dir, batch=batch, dynamic=True))  # type: ignore[call-arg]
    if "batch" in params:
        return Path(deploy.export(out_dir, batch=batch))  # type: ignore[call-arg]
    if batch != 1:
        raise TypeError(
            f"this {deploy.route} Deployable's export takes no batch; data.batch={batch}"
        )
    return Path(deploy.export(out_dir))


def cached_export(job: Job, deploy: Deployable, batch: int = 1, dynamic: bool = False) -> Path:
    """The ONNX for ``deploy`` from the cache, exported on a miss.

    Entries go through :func:`qexp.cache.cached`: built in a temp dir under a lock (parallel
    jobs export once), a sha256 manifest written last, and a truncated or damaged file found
    on reuse is reported and rebuilt.
    """
    dynamic = dynamic and exports_dynamic(deploy)
    entry = job.cache("onnx", export_key(job.settings, deploy, batch, dynamic))
    built: dict[str, str] = {}

    def build(tmp: Path) -> list[str]:
        log.info(
            "exporting the %s ONNX (batch %d%s) into the cache",
            deploy.route,
            batch,
            ", dynamic shape" if dynamic else "",
        )
        out = _call_export(deploy, tmp, batch, dynamic)
        if not out.is_file():
            raise FileNotFoundError(f"the {deploy.route} export wrote no ONNX at {out}")
        if out.resolve().parent != tmp.resolve():
            shutil.copy2(out, tmp / out.name)  # an export that wrote elsewhere
        built["onnx"] = out.name
        # side files (a dynamic-range JSON, external data) are cached with it
        return [p.name for p in tmp.iterdir() if p.is_file()]

    names = cache.cached(entry, build, meta={"kind": "onnx", "route": deploy.route})
    onnx = built.get("onnx")
    if onnx is None:
        found = [n for n in names if n.endswith(".onnx")]
        if len(found) != 1:
            raise FileNotFoundError(f"cache entry {entry}: expected one .onnx, found {found}")
        onnx = found[0]
        log.info("reusing exported ONNX %s", entry / onnx)
    return entry / onnx
