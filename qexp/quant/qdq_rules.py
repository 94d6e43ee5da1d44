"""``quantizer.qdq_rules``: which activation quantizers must share one scale for TensorRT.

TensorRT moves a per-tensor Q/DQ pair across the layers it commutes with (Concat, MaxPool,
Slice/Split, nearest Resize, Reshape-like layers: quantizing before or after them gives the same
integers) and then fuses it into the producing convolution. That works only where every Q/DQ
that lands on one tensor has one scale: a C2f whose chunk feeds both its bottleneck (scale A)
and its Concat (whose consumer quantizes with scale B) gets its producer's output in float and
two separate quantize layers, i.e. reformat layers in the engine, and SPPF's MaxPool chain the
same (NVIDIA's "Q/DQ placement recommendations"; yolo_deepstream's YOLOv7 rules tie the
quantizers around Concat and MaxPool for this reason).

``none``: every quantizer keeps its own observer's scale (qexp's placement so far).
``trt``: the quantizers that read tensors joined through such layers form one group and share
one quantizer module (so QAT's learned scale stays shared); its range is the job's observer on
the merged calibration histograms of the distinct tensors the group reads, as one quantizer
calibrated on all of them would see it. Residual identity quantizers (``quantizer.residual``)
join the group of the tensor they read. The head's last 1x1 convolutions keep their input
quantizers: in the recorded 4xH100 engines (``shared/device/records-yolov8n-4xh100``, every
INT8 route) TensorRT ran them INT8 in, fp32 out, so Q/DQ there costs nothing TensorRT would
not do anyway; only DFL's fixed conv stays float (``placement.FLOAT_BLOCKS``).

The graph is read by running the model once on a small zero image under a
``TorchFunctionMode`` that records which tensors those layers join (no FX tracing, which
YOLO's Python control flow breaks); the exported ONNX is what the tests check it against.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from qexp.contracts import Choice
from qexp.quant.fakequant import ActQuantizer


class QdqRules(Choice):
    """Where Q/DQ scales are tied (``quantizer.qdq_rules``)."""

    none = "none"
    trt = "trt"


# Layers a symmetric per-tensor quantizer commutes with: their outputs hold (a subset or a
# copy of) their inputs' values, so one scale serves both sides.
_COMMUTING = {
    torch.cat, torch.concat, torch.concatenate, torch.chunk, torch.split, torch.flatten,
    torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose,
    torch.Tensor.chunk, torch.Tensor.split, torch.Tensor.__getitem__, torch.Tensor.view,
    torch.Tensor.reshape, torch.Tensor.flatten, torch.Tensor.permute, torch.Tensor.transpose,
    torch.Tensor.squeeze, torch.Tensor.unsqueeze, torch.Tensor.contiguous,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool2d,
}  # fmt: skip
_INTERPOLATE = inspect.signature(F.interpolate)


def _commutes(func: Any, args: tuple, kwargs: dict) -> bool:
    if func is F.interpolate:  # nearest only: a linear resize makes new values
        bound = _INTERPOLATE.bind(*args, **kwargs)
        return bound.arguments.get("mode", "nearest") == "nearest"
    return func in _COMMUTING


def tensors_in(x: Any) -> list[torch.Tensor]:
    """The tensors in ``x`` (a tensor, or nested lists, tuples and dicts of them)."""
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, list | tuple):
        return [t for v in x for t in tensors_in(v)]
    if isinstance(x, dict):
        return [t for v in x.values() for t in tensors_in(v)]
    return []


class _Joins(TorchFunctionMode):
    """Union-find over the tensors of one forward pass, joined through commuting layers."""

    def __init__(self) -> None:
        super().__init__()
        self.parent: dict[int, int] = {}
        self.alive: list[torch.Tensor] = []  # ids stay unique while the tensors live

    def find(self, t: int) -> int:
        self.parent.setdefault(t, t)
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, tensors: list[torch.Tensor]) -> None:
        self.alive += tensors
        roots = [self.find(id(t)) for t in tensors]
        for r in roots[1:]:
            self.parent[r] = roots[0]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if _commutes(func, args, kwargs):
            self.union(tensors_in(args) + tensors_in(kwargs) + tensors_in(out))
        return out


@dataclass(frozen=True)
class SharedScale:
    """One group of activation quantizers that share a scale: their module paths, and the
    calibrated layers whose inputs are the distinct tensors the group reads."""

    quantizers: tuple[str, ...]
    stats: tuple[str, ...]


def act_quantizers(model: nn.Module) -> dict[str, ActQuantizer]:
    return {n: m for n, m in model.named_modules() if isinstance(m, ActQuantizer)}


def _stats_layer(path: str, residual: dict[str, str]) -> str:
    """The calibrated layer whose input a quantizer reads: a conv's own input; a residual
    quantizer reads its block's input, which the block's first conv reads too."""
    owner, _, attr = path.rpartition(".")
    return residual[owner] if attr == "residual_quantizer" else owner


@torch.no_grad()
def shared_scales(model: nn.Module, residual: dict[str, str], imgsz: int) -> list[SharedScale]:
    """The groups of activation quantizers of ``model`` (fake-quant, ranges unset) that read
    tensors joined through commuting layers; groups of one are left out."""
    quantizers = act_quantizers(model)
    reads: dict[str, int] = {}
    joins = _Joins()

    def read(name: str, x: torch.Tensor) -> None:
        joins.alive.append(x)  # its id must not be reused by a later tensor
        reads.setdefault(name, id(x))

    hooks = [
        q.register_forward_pre_hook(lambda m, a, name=name: read(name, a[0]))
        for name, q in quantizers.items()
    ]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        x = torch.zeros(1, 3, imgsz, imgsz, device=device)
        with joins:
            out = model(x)
        joins.alive.append(x)
        del out
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    groups: dict[int, list[str]] = {}
    for name in quantizers:  # module order: the first member is the group's quantizer
        if name in reads:
            groups.setdefault(joins.find(reads[name]), []).append(name)
    out_groups = []
    for members in groups.values():
        if len(members) < 2:
            continue
        tensors: dict[int, str] = {}
        for m in members:  # one stats layer per distinct tensor read
            tensors.setdefault(reads[m], _stats_layer(m, residual))
        out_groups.append(SharedScale(tuple(members), tuple(dict.fromkeys(tensors.values()))))
    return out_groups


def share(model: nn.Module, groups: list[SharedScale]) -> None:
    """Put each group's first quantizer module in every member's place (in place)."""
    for g in groups:
        first = model.get_submodule(g.quantizers[0])
        for path in g.quantizers[1:]:
            owner, _, attr = path.rpartition(".")
            setattr(model.get_submodule(owner) if owner else model, attr, first)
