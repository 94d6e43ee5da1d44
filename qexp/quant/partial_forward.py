"""Forward passes that resume from cached block outputs (sensitivity analysis speed-up).

When only layer i differs from a reference configuration (float, or fully quantized), every
block before i's block computes exactly what the reference computed, so those outputs can be
reused. YOLO models of both families run ``model.model`` as a list of blocks, each with ``f``
(its inputs: -1 the previous block, or indices) and ``i`` (its index), saving the outputs named
in ``model.save``: that loop is replayed here from any block. On a model without that layout
every pass simply starts at block 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def blocks(model: nn.Module) -> nn.Sequential | None:
    """The block list of a YOLO model (``model.model`` with ``f``/``i`` on each block)."""
    seq = getattr(model, "model", None)
    ok = isinstance(seq, nn.Sequential) and hasattr(model, "save")
    return seq if ok and all(hasattr(m, "f") and hasattr(m, "i") for m in seq) else None


def block_of(name: str, model: nn.Module) -> int:
    """Index of the block holding module ``name`` (``model.<j>.…``), 0 when unknown."""
    parts = name.split(".")
    if blocks(model) is None or len(parts) < 2 or parts[0] != "model" or not parts[1].isdigit():
        return 0
    return int(parts[1])


@torch.no_grad()
def run(
    model: nn.Module,
    x: torch.Tensor,
    start: int = 0,
    cache: list | None = None,
    stop: int | None = None,
):
    """(output, every block's output) of ``model`` on ``x``, replaying blocks ``start`` up to
    ``stop`` (default: the end) with the outputs of blocks before ``start`` taken from ``cache``
    (a previous call's list; entries that no later block reads may be None)."""
    seq = blocks(model)
    if seq is None:
        return model(x), None
    save = set(model.save)
    outs: list[Any] = []
    y: list[Any] = []
    if start > 0:
        assert cache is not None
        outs = list(cache[:start])
        y = [o if j in save else None for j, o in enumerate(outs)]
        x = outs[-1]
    for m in list(seq)[start:stop]:
        if m.f != -1:
            x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
        x = m(x)
        outs.append(x)
        y.append(x if m.i in save else None)
    return x, outs
