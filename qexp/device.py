"""Where a quantizer's torch work runs: ``quantizer.device`` (auto | cpu | cuda | cuda:N).

One option for every quantizer that runs torch (the calibration pass, sensitivity, AdaRound,
QAT), resolved here once; ``auto`` is CUDA when torch sees a device, else the CPU.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

_SPEC = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(name: str) -> str | None:
    """Why ``name`` is not a ``quantizer.device`` value, or None (no CUDA query: config time)."""
    if not _SPEC.fullmatch(str(name)):
        return f"quantizer.device={name!r}: one of auto, cpu, cuda, cuda:N"
    return None


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device ``name`` means here; a CUDA one always carries its index (the record
    says which GPU ran the work)."""
    if (why := check_device(name)) is not None:
        raise ValueError(why)
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"quantizer.device={name} but torch sees no CUDA device")
    dev = torch.device("cuda" if name == "auto" else name)
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise RuntimeError(
            f"quantizer.device={name}: torch sees {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", index)


def describe(device: torch.device) -> str:
    """``cpu``, or ``cuda:N (<GPU name>)`` for a record."""
    if device.type != "cuda":
        return str(device)
    return f"{device} ({torch.cuda.get_device_name(device)})"


@contextlib.contextmanager
def ieee_fp32() -> Iterator[None]:
    """Plain float32 convolutions and matmuls on CUDA, restored afterwards.

    cuDNN convolutions use TF32 (10-bit mantissa) by default on Ampere and later: that moves
    calibration ranges and sensitivity scores by ~1e-3 relative, far more than the summation
    order does. Measurement passes that must equal the CPU pass run under this; at yolov8n's
    size float32 costs nothing noticeable on a data-centre GPU."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = conv
        torch.backends.cuda.matmul.allow_tf32 = matmul
