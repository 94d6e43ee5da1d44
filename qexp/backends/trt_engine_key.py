"""The key of the TensorRT engine cache (``trt_engine/<hash>/engine.plan``): what the build of
a request reads, so a job whose build would read the same reuses the engine.

The key is derived from ``protocol.Request``'s own fields, less those the protocol declares
outside the engine (``NOT_IN_ENGINE``), so a request field added later is keyed by default."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from qexp.cache import file_hash
from qexp.trt import protocol

# what the worker's probe found, not a request field: an engine is built for one TensorRT and GPU
PROBED = ("tensorrt", "gpu")


def engine_key(req: protocol.Request, probe: dict[str, Any]) -> dict[str, Any]:
    """Every request field the engine depends on (files by their content; a field of another
    route as None) and the TensorRT version and GPU the worker ``probe`` found."""
    key: dict[str, Any] = {}
    for f in dataclasses.fields(protocol.Request):
        if f.name in protocol.NOT_IN_ENGINE:
            continue
        value = getattr(req, f.name)
        if f.name in protocol.ADDED and value == f.default:
            continue
        if protocol.ROUTE_ONLY.get(f.name, req.route) != req.route:
            value = None
        elif f.name in protocol.FILE_FIELDS and value:
            value = file_hash(Path(value), 16)
        key[f.name] = value
    return key | {name: probe.get(name) for name in PROBED}
