"""Per-layer precision map of TensorRT engines: one strip per engine, one cell per layer.

The layers come from the engine's inspector JSON, parsed by :mod:`qexp.trt.engine_info`
(the TensorRT backend's parser), so the map and the ``layers_int8/fp16/fp32`` metrics count
the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from qexp.report.plots import plt

COLORS = {
    "int8": "#2ca02c",
    "fp16": "#1f77b4",
    "fp32": "#ff7f0e",
    "reformat": "#d62728",
    "other": "#d9d9d9",
}
ORDER = ("int8", "fp16", "fp32", "reformat", "other")
LABELS = {"other": "other (constants: no input)"}


def category(precision: object, is_reformat: bool) -> str:
    if is_reformat:
        return "reformat"
    p = str(precision or "").lower()
    for name in ("int8", "fp16", "fp32"):
        if name in p:
            return name
    return "other"


def layer_frame(layers: pd.DataFrame) -> pd.DataFrame:
    """Normalise a per-layer table to columns name, type, category (one of ORDER)."""
    if "precision" not in layers:
        raise ValueError(f"per-layer table has no 'precision' column (has {list(layers)})")
    reformat = (
        layers["reformat"].astype(bool)
        if "reformat" in layers
        # the same rule as engine_info.is_reformat, so the map agrees with reformat_layers
        else layers.get("type", pd.Series("", index=layers.index)).astype(str) == "Reformat"
    )
    return pd.DataFrame(
        {
            "name": layers.get("name", pd.Series("", index=layers.index)).astype(str),
            "type": layers.get("type", pd.Series("", index=layers.index)).astype(str),
            "category": [
                category(p, r) for p, r in zip(layers["precision"], reformat, strict=True)
            ],
        }
    )


def precision_map(engines: Mapping[str, pd.DataFrame], title: str = "") -> Figure:
    """Strips of coloured cells (engine layers in execution order), counts in the legend."""
    if not engines:
        raise ValueError("no engine layer tables to plot")
    frames = {label: layer_frame(t) for label, t in engines.items()}
    width = max(len(f) for f in frames.values())
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(frames) + 1.6))
    for row, f in enumerate(frames.values()):
        y = len(frames) - 1 - row
        ax.bar(
            range(len(f)),
            0.8,
            bottom=y - 0.4,
            width=1.0,
            color=[COLORS[c] for c in f["category"]],
            edgecolor="white",
            linewidth=0.3,
        )
        counts = f["category"].value_counts()
        summary = " ".join(f"{c}:{counts[c]}" for c in ORDER if c in counts)
        ax.text(width + 0.5, y, summary, va="center", fontsize=7)
    ax.set_yticks(range(len(frames)))
    ax.set_yticklabels(list(frames)[::-1], fontsize=8)
    ax.set_xlim(-0.5, width * 1.28 + 2)
    ax.set_xlabel("layer (execution order)")
    ax.spines[["top", "right"]].set_visible(False)
    present = {c for f in frames.values() for c in f["category"]}
    fig.legend(
        handles=[Patch(color=COLORS[c], label=LABELS.get(c, c)) for c in ORDER if c in present],
        fontsize=8,
        ncol=5,
        loc="lower center",
        frameon=False,
    )
    ax.set_title(title or "Per-layer precision of each engine", fontsize=10)
    fig.tight_layout(rect=(0, 0.07 if len(frames) > 2 else 0.12, 1, 1))
    return fig


def float_layers(layers: pd.DataFrame) -> pd.DataFrame:
    """The compute layers of an INT8 engine that run in fp16/fp32 (what users look for)."""
    f = layer_frame(layers)
    return f[f["category"].isin(("fp16", "fp32")) & ~f["type"].isin(("Constant", "NoOp"))]


def engine_layers(path: Path) -> pd.DataFrame:
    """Per-layer table of one inspector JSON, through the TensorRT backend's parser."""
    from qexp.trt import engine_info

    return pd.DataFrame(engine_info.layer_table(engine_info.load(Path(path))))
