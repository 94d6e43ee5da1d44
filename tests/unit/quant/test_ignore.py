"""Ignore patterns: globs over layer names, @head/@stem, and errors that name close layers."""

from __future__ import annotations

import pytest

from qexp.quant.ignore import IgnoreError, select_ignored
from qexp.quant.placement import quantizable


def test_globs_blocks_and_symbols(tiny):
    layers, fixed = quantizable(tiny)
    assert fixed == ["model.3.dfl.conv"]  # DFL is arithmetic, never quantized
    assert select_ignored(["model.3.*"], tiny, layers) == ["model.3.box", "model.3.cls"]
    assert select_ignored(["model.1"], tiny, layers) == ["model.1.cv1.conv", "model.1.cv2.conv"]
    assert select_ignored(["@head"], tiny, layers) == ["model.3.box", "model.3.cls"]
    assert select_ignored(["@stem", "*.cls"], tiny, layers) == ["model.0.conv", "model.3.cls"]
    assert select_ignored([], tiny, layers) == []


def test_pattern_matching_nothing_lists_close_names(tiny):
    layers, _ = quantizable(tiny)
    with pytest.raises(
        IgnoreError, match=r"'model\.13\.\*' matches no quantizable layer.*model\.1"
    ):
        select_ignored(["model.13.*"], tiny, layers)
    with pytest.raises(IgnoreError, match="unknown symbolic"):
        select_ignored(["@neck"], tiny, layers)
