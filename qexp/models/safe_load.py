"""Loading checkpoints without running code from them.

A ``.pt`` file is a pickle, and unpickling can call any function the file names: a crafted
checkpoint can run a shell command the moment it is loaded. qexp therefore resolves only the
globals a detector checkpoint needs:

- classic YOLOv5 checkpoints go through qexp's own unpickler (``yolov5_classic``), which maps
  the YOLOv5 blocks and allows only the globals of :func:`classic_global` (torch tensors,
  storages, dtypes and ``torch.nn`` modules, numpy arrays, ``OrderedDict``, sets);
- ultralytics checkpoints load with ``torch.load(weights_only=True)`` and ultralytics' own
  allowlist of its module classes (``ULTRALYTICS_SAFE_LOAD``, set by :mod:`qexp.offline`)
  where the installed ultralytics and torch have it; elsewhere the file is scanned for globals
  outside torch and ultralytics first, and a warning says it is then unpickled in full.

Anything else is refused with :class:`UnsafeCheckpointError`, before it can run.
"""

from __future__ import annotations

import importlib
import logging
import pickle
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("qexp")
TRUST = "weights are code: load only checkpoints you trust (README, 'Trusted input')"

# module -> names a classic checkpoint may name (beyond nn modules and dtypes, below)
_ALLOWED: dict[str, frozenset[str]] = {
    "collections": frozenset({"OrderedDict"}),
    "builtins": frozenset({"set", "frozenset", "slice"}),
    "torch._utils": frozenset(
        {
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
            "_rebuild_tensor_v3",
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
            "_rebuild_qtensor",
            "_rebuild_sparse_tensor",
            "_rebuild_meta_tensor_no_storage",
            "_rebuild_device_tensor_from_numpy",
        }
    ),
    "torch._tensor": frozenset({"_rebuild_from_type_v2"}),
    "torch": frozenset({"Size", "Tensor", "device"}),
    "torch.nn.parameter": frozenset({"Parameter"}),
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint names a global outside the allowlist; nothing from the file ran."""


def _resolve(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def classic_global(module: str, name: str) -> Any:
    """The object a classic YOLOv5 checkpoint may name as ``module.name``, else raise."""
    if module == "__builtin__":  # the Python 2 name protocol-2 pickles keep
        module = "builtins"
    if name in _ALLOWED.get(module, ()):
        return _resolve(module, name)
    if module == "torch" or module.startswith("numpy.dtypes"):
        obj = getattr(importlib.import_module(module), name, None)
        # torch.float16, torch.strided, torch.contiguous_format; numpy's Float32DType ...
        allowed = (torch.dtype, torch.layout, torch.memory_format)
        if isinstance(obj, allowed) or (
            module.startswith("numpy.dtypes") and isinstance(obj, type)
        ):
            return obj
    if module == "torch.nn.modules" or module.startswith("torch.nn.modules."):
        obj = getattr(importlib.import_module(module), name, None)
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module):
            return obj
    raise UnsafeCheckpointError(
        f"refused global {module}.{name}: a classic YOLOv5 checkpoint holds only torch tensors "
        "and nn modules, numpy arrays, OrderedDict and the YOLOv5 blocks"
    )


def ultralytics_unrestricted() -> str | None:
    """Why ultralytics would unpickle a checkpoint in full here, or None when it loads with
    ``weights_only=True`` and its allowlist."""
    from ultralytics import __version__
    from ultralytics.nn import tasks

    safe = getattr(tasks, "_SafeLoad", None)
    if safe is None:
        return f"ultralytics {__version__} has no restricted loading (ULTRALYTICS_SAFE_LOAD)"
    if not getattr(safe, "SUPPORTED", False):
        return f"torch {torch.__version__} is too old for ultralytics' restricted loading"
    if not getattr(tasks, "SAFE_LOAD", False):
        return "ULTRALYTICS_SAFE_LOAD is off (0, or ultralytics was imported before qexp set it)"
    return None


def foreign_globals(
    path: str | Path, allowed: tuple[str, ...] = ("torch.", "ultralytics.")
) -> list[str]:
    """Globals ``path`` names outside ``allowed`` module prefixes and torch's weights-only set
    (empty where torch cannot scan a checkpoint)."""
    scan = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if scan is None:
        return []
    try:
        names = scan(str(path))
    except Exception:  # noqa: BLE001 - not a zip checkpoint: the load itself will say so
        return []
    return sorted(n for n in names if not n.startswith(allowed))
