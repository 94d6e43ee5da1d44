"""Forward passes that resume from cached block outputs (sensitivity analysis speed-up).

When only layer i differs from a reference configuration (float, or fully quantized), every
block before i's block computes exactly what the reference computed, so those outputs can be
reused. YOLO models of both families run ``model.model`` as a list of blocks, each with ``f``
(its inputs: -1 the previous block, or indices) and ``i`` (its index), saving the outputs named
in ``model.save``: that loop is replayed here from any block. On a model without that layout
every pass simply starts at block 0.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn


def blocks(model: nn.Module) -> nn.Sequential | None:
    """The block list of a YOLO model (``model.model`` with ``f``/``i`` on each block)."""
    seq = getattr(model, "model", None)
    if not (isinstance(seq, nn.Sequential) and hasattr(model, "save")):
        return None
    return seq if all(hasattr(m, "f") and hasattr(m, "i") for m in seq) else None


def saved(model: nn.Module) -> set[int]:
    """The blocks whose outputs later blocks read (a YOLO model's ``save`` list)."""
    return set(cast(list[int], model.save))


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
    save = saved(model)
    outs: list[Any] = []
    y: list[Any] = []
    h: Any = x  # a block's input: a tensor, or a list of them (Concat, Detect)
    if start > 0:
        assert cache is not None
        outs = list(cache[:start])
        y = [o if j in save else None for j, o in enumerate(outs)]
        h = outs[-1]
    for m in list(seq)[start:stop]:
        f = cast(int | list[int], m.f)
        if f != -1:
            h = y[f] if isinstance(f, int) else [h if j == -1 else y[j] for j in f]
        h = m(h)
        outs.append(h)
        y.append(h if m.i in save else None)
    return h, outs
