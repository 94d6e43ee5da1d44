"""What a record says about where it ran: git sha, library versions, GPU."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

_PACKAGES = ("torch", "ultralytics", "onnx", "onnxruntime", "mlflow", "hydra-core", "tensorrt")


@functools.cache
def git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def versions() -> dict[str, str]:
    v = {"python": platform.python_version(), "machine": platform.machine()}
    for pkg in _PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            v[pkg] = importlib.metadata.version(pkg)
    try:
        import torch

        if torch.cuda.is_available():
            v["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a broken CUDA setup must not fail a CPU job
        pass
    return dict(v)
