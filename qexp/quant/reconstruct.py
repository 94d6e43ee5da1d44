"""Layer-wise reconstruction data: (input patch, float target) rows for each layer.

AdaRound fits one layer at a time so that, fed the *quantized* model's input (activation
quantizer applied), it reproduces the *float* model's output of that layer after its activation
(asymmetric reconstruction, AdaRound section 4). A convolution's output at one position is the
dot product of its weights with one input patch, so the objective only needs rows of
(patch, target). We sample output positions across the calibration images instead of keeping
whole feature maps: a few thousand rows per layer cost megabytes, where 128 full 640x640 maps
cost gigabytes per layer, and rows drawn from many images are less correlated than the
positions of one map.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class _Stop(Exception):
    """Raised from a hook once every wanted layer has been seen: the rest of the forward pass
    is not needed (early groups of layers then cost a fraction of a full pass)."""


@dataclass
class Rows:
    x: torch.Tensor  # (R, D) input patches from the quantized model, input quantizer applied
    y: torch.Tensor  # (R, Cout) the float model's output of the layer, activation applied

    @property
    def nbytes(self) -> int:
        return self.x.numel() * self.x.element_size() + self.y.numel() * self.y.element_size()


def follower_activation(model: nn.Module, name: str) -> nn.Module:
    """The activation applied right after layer ``name``: the ``act`` of a Conv block
    (ultralytics ``Conv``, classic YOLOv5 ``Conv``: act(bn(conv(x))) with BN folded), else identity."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    act = getattr(parent, "act", None)
    if child == "conv" and isinstance(act, nn.Module):
        if getattr(act, "inplace", False):  # SiLU(inplace=True) would overwrite autograd inputs
            act = copy.copy(act)
            act.inplace = False  # type: ignore[assignment]  # torch types Module attrs as Tensor | Module
        return act
    return nn.Identity()


@torch.no_grad()
def execution_order(model: nn.Module, names: Sequence[str], example: torch.Tensor) -> list[str]:
    """``names`` in the order the forward pass runs them (registration order can differ:
    ultralytics' C2f registers ``cv2`` before the bottlenecks it runs after)."""
    order: list[str] = []
    hooks = [
        model.get_submodule(n).register_forward_pre_hook(
            lambda _m, _a, n=n: order.append(n) if n not in order else None
        )
        for n in names
    ]
    try:
        model(example)
    finally:
        for h in hooks:
            h.remove()
    missing = [n for n in names if n not in order]
    return order + missing  # layers the forward never reaches keep their place at the end


def patches(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(positions, D) input rows of ``layer`` for input ``x``, in its output's position order."""
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ValueError(f"padding_mode={layer.padding_mode!r} is not supported")
        if isinstance(layer.padding, str):  # "same"/"valid": unfold takes explicit pads only
            raise ValueError(f"padding={layer.padding!r} is not supported")
        cols = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    raise TypeError(f"no reconstruction rows for {type(layer).__name__}")


def outputs(layer: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """(positions, Cout) rows of a layer output, matching :func:`patches`."""
    if isinstance(layer, nn.Conv2d):
        return y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1])
    return y.reshape(-1, y.shape[-1])


def apply_rows(layer: nn.Conv2d | nn.Linear, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``layer``'s pre-activation output for input rows ``x`` with ``weight`` (grouped convs too)."""
    groups = getattr(layer, "groups", 1)
    w = weight.reshape(weight.shape[0], -1)
    if groups == 1:
        out = x @ w.t()
    else:
        r = x.shape[0]
        xg = x.reshape(r, groups, -1).transpose(0, 1)  # (G, R, D/G)
        wg = w.reshape(groups, -1, w.shape[1])  # (G, Cout/G, D/G)
        out = torch.bmm(xg, wg.transpose(1, 2)).transpose(0, 1).reshape(r, -1)
    return out if layer.bias is None else out + layer.bias


def row_bytes(layer: nn.Conv2d | nn.Linear) -> int:
    """Bytes one row of this layer takes (float32 patch + target)."""
    w = layer.weight
    return 4 * (w[0].numel() * getattr(layer, "groups", 1) + w.shape[0])


def plan_passes(
    layers: Mapping[str, nn.Conv2d | nn.Linear],
    order: Sequence[str],
    rows: int,
    per_pass: int,
    max_mb: float,
) -> list[list[str]]:
    """Consecutive groups of layers (execution order), each collected in one pass: at most
    ``per_pass`` layers and about ``max_mb`` of rows."""
    groups: list[list[str]] = [[]]
    size = 0.0
    for n in order:
        mb = rows * row_bytes(layers[n]) / 2**20
        if groups[-1] and (len(groups[-1]) >= per_pass or size + mb > max_mb):
            groups.append([])
            size = 0.0
        groups[-1].append(n)
        size += mb
    return [g for g in groups if g]


def _call(model: nn.Module, x: torch.Tensor) -> None:
    with contextlib.suppress(_Stop):
        model(x)


@torch.no_grad()
def collect(
    fmodel: nn.Module,
    qmodel: nn.Module,
    names: Sequence[str],
    images: Iterable[np.ndarray],
    num_images: int,
    rows: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    track: Callable | None = None,
) -> dict[str, Rows]:
    """Reconstruction rows for ``names`` (same names in ``fmodel`` and its fake-quant twin
    ``qmodel``): ``rows`` per layer, sampled evenly over ``num_images`` images."""
    per_image = max(1, math.ceil(rows / max(1, num_images)))
    gen = torch.Generator().manual_seed(seed)
    idx: dict[str, torch.Tensor] = {}
    xs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    ys: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    seen: set[str] = set()

    def float_hook(name: str, layer: nn.Module, act: nn.Module):
        def hook(_m, _args, out):
            y = outputs(layer, out)
            pick = torch.randperm(y.shape[0], generator=gen)[:per_image].to(y.device)
            idx[name] = pick
            ys[name].append(act(y[pick]).float().cpu())
            seen.add(name)
            if len(seen) == len(names):
                raise _Stop

        return hook

    def quant_hook(name: str, layer: nn.Module):
        def hook(_m, args):
            x = layer.input_quantizer(args[0])  # the reconstruction sees quantized inputs
            xs[name].append(patches(layer, x)[idx[name]].float().cpu())
            seen.add(name)
            if len(seen) == len(names):
                raise _Stop

        return hook

    hooks = []
    for n in names:
        fl, ql = fmodel.get_submodule(n), qmodel.get_submodule(n)
        hooks.append(fl.register_forward_hook(float_hook(n, fl, follower_activation(fmodel, n))))
        hooks.append(ql.register_forward_pre_hook(quant_hook(n, ql)))
    try:
        it = track(images, "adaround: collecting rows") if track else images
        for img in it:
            x = torch.from_numpy(np.ascontiguousarray(img)).float().to(device)
            seen.clear()
            _call(fmodel, x)
            seen.clear()
            _call(qmodel, x)
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for n in names:
        if not xs[n]:
            raise RuntimeError(f"layer {n} never ran during the reconstruction pass")
        out[n] = Rows(torch.cat(xs[n]), torch.cat(ys[n]))
    return out


@torch.no_grad()
def float_targets(
    fmodel: nn.Module,
    names: Sequence[str],
    images: Sequence[np.ndarray],
    per_image: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, list[torch.Tensor]], dict[str, torch.Tensor]]:
    """(sampled output positions per layer and image, float targets per layer): one full pass of
    the float model, which never changes, serves every layer."""
    gen = torch.Generator().manual_seed(seed)
    idx: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    ys: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def hook(name: str, layer: nn.Module, act: nn.Module):
        def fn(_m, _args, out):
            y = outputs(layer, out)
            pick = torch.randperm(y.shape[0], generator=gen)[:per_image].to(y.device)
            idx[name].append(pick)
            ys[name].append(act(y[pick]).float().cpu())

        return fn

    hooks = []
    for n in names:
        layer = fmodel.get_submodule(n)
        hooks.append(layer.register_forward_hook(hook(n, layer, follower_activation(fmodel, n))))
    try:
        fmodel.eval()
        for img in images:
            fmodel(torch.from_numpy(np.ascontiguousarray(img)).float().to(device))
    finally:
        for h in hooks:
            h.remove()
    return idx, {n: torch.cat(ys[n]) for n in names}


class BlockwiseInputs:
    """The quantized model's inputs to each layer, collected block by block: the outputs of the
    blocks already finished (with their final rounding) are cached per image, so collecting a
    layer's rows re-runs only its own block up to that layer, and every layer sees the
    rounding its predecessors ended with (what sequential AdaRound needs)."""

    def __init__(self, qmodel: nn.Module, images: Sequence[np.ndarray], device) -> None:
        from qexp.quant import partial_forward

        self.pf, self.q, self.device = partial_forward, qmodel, device
        self.images = [torch.from_numpy(np.ascontiguousarray(im)).float() for im in images]
        self.cache: list[list] = [[] for _ in images]
        self.save = partial_forward.saved(qmodel)

    @torch.no_grad()
    def rows(self, name: str, block: int, idx: list[torch.Tensor]) -> torch.Tensor:
        """(R, D) quantized input patches of layer ``name`` (in ``block``) at ``idx``."""
        layer = self.q.get_submodule(name)
        got: list[torch.Tensor] = []

        def pre(_m, args):
            x = layer.input_quantizer(args[0])
            got.append(patches(layer, x)[idx[len(got)]].float().cpu())
            raise _Stop

        h = layer.register_forward_pre_hook(pre)
        try:
            for i, x in enumerate(self.images):
                with contextlib.suppress(_Stop):
                    self.pf.run(self.q, x.to(self.device), block, self.cache[i] or None, block + 1)
        finally:
            h.remove()
        return torch.cat(got)

    @torch.no_grad()
    def advance(self, block: int) -> None:
        """Run ``block`` (now final) on every image and cache its output."""
        for i, x in enumerate(self.images):
            _, outs = self.pf.run(
                self.q, x.to(self.device), block, self.cache[i] or None, block + 1
            )
            if block > 0 and block - 1 not in self.save:
                outs[block - 1] = None  # nobody reads it again: free the memory
            self.cache[i] = outs
