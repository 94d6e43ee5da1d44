"""Layer selection: glob patterns over module names pick the layers kept in float.

A pattern matches a quantizable layer's full name (``model.22.cv2.0.0.conv``) or any block
above it (``model.22`` and ``model.22.*`` both keep the whole head). Symbolic patterns let a
preset work across families: ``@head`` is the detection head, ``@stem`` the first layer.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Sequence

from torch import nn

HEAD_CLASSES = ("Segment", "Pose", "OBB")  # besides every class whose name ends in "Detect"


class IgnoreError(ValueError):
    """An ignore pattern that matches no quantizable layer."""


def head_name(model: nn.Module) -> str | None:
    """Module name of the detection head (the last Detect-like block), if any."""
    found = None
    for name, m in model.named_modules():
        cls = type(m).__name__
        if cls.endswith("Detect") or cls in HEAD_CLASSES:
            found = name
    return found


def resolve(patterns: Iterable[str], model: nn.Module, layers: Sequence[str]) -> list[str]:
    """Expand ``@head`` / ``@stem`` into plain globs."""
    out = []
    for p in patterns:
        if p == "@head":
            head = head_name(model)
            if head is None:
                raise IgnoreError("ignore pattern '@head': this model has no Detect-like head")
            out.append(f"{head}.*")
        elif p == "@stem":
            if not layers:
                raise IgnoreError("ignore pattern '@stem': the model has no quantizable layer")
            out.append(layers[0])
        elif p.startswith("@"):
            raise IgnoreError(f"unknown symbolic ignore pattern {p!r} (known: @head, @stem)")
        else:
            out.append(p)
    return out


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


def select_ignored(patterns: Iterable[str], model: nn.Module, layers: Sequence[str]) -> list[str]:
    """The layers (of ``layers``) that the patterns keep in float.

    A pattern that matches nothing is an error naming the closest layer and block names.
    """
    ignored: list[str] = []
    for pattern in resolve(patterns, model, layers):
        hits = [n for n in layers if _matches(n, pattern)]
        if not hits:
            blocks = sorted({".".join(n.split(".")[:k]) for n in layers for k in range(1, 4)})
            close = difflib.get_close_matches(pattern.rstrip(".*"), blocks + list(layers), n=5)
            hint = f"; close names: {', '.join(close)}" if close else ""
            raise IgnoreError(
                f"ignore pattern {pattern!r} matches no quantizable layer "
                f"({len(layers)} layers, e.g. {layers[0] if layers else '-'}){hint}"
            )
        ignored += [n for n in hits if n not in ignored]
    return [n for n in layers if n in ignored]
