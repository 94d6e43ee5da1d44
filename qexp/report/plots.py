"""Report plots (matplotlib, headless): Pareto front, sensitivity ranking, calibration ranges.

Each function takes plain data and returns a Figure; :func:`png_bytes` turns it into a PNG
for the HTML page (base64) or a file. The per-layer precision map of an
engine is in :mod:`qexp.report.precision_map`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # reports are written on headless machines (CI, GPU boxes)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from qexp.report import columns as C  # noqa: E402

DPI = 110
PALETTE = [plt.get_cmap("tab10")(i) for i in range(10)]


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both lower x and higher y, by x."""
    pts = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    front, best_y = [], -math.inf
    for i in pts:
        if y[i] > best_y:
            front.append(i)
            best_y = y[i]
    return front


def pareto(
    df: pd.DataFrame,
    x: str = "latency_ms_p50",
    y: str = "map50_95",
    label_by: Sequence[str] = (),
    color_by: str | None = None,
    title: str = "",
    x_p90: str | None = None,
) -> Figure:
    """mAP vs latency of the finished jobs; the Pareto-optimal ones joined by a line.

    ``x_p90``: the p90 of ``x``. Each point then gets a whisker from p50 to p90, and a point
    whose p90/p50 is at least ``columns.NOISY_SPREAD`` (timed under load) is drawn hollow.
    """
    d = df[(df["status"] == "FINISHED") & df[x].notna() & df[y].notna()].reset_index(drop=True)
    if d.empty:
        raise ValueError(f"no finished job has both {x} and {y}")
    fig, ax = plt.subplots(figsize=(7.5, 5))
    p90 = pd.to_numeric(d[x_p90], errors="coerce") if x_p90 and x_p90 in d else None
    noisy = (p90 / d[x] >= C.NOISY_SPREAD) if p90 is not None else pd.Series(False, d.index)
    groups = list(dict.fromkeys(d[color_by])) if color_by and color_by in d else [None]
    for gi, g in enumerate(groups):
        sel = d if g is None else d[d[color_by] == g]
        color = PALETTE[gi % len(PALETTE)]
        if p90 is not None:
            ax.hlines(sel[y], sel[x], p90[sel.index], color=color, lw=1.2, alpha=0.7, zorder=2)
        for hollow in (False, True):
            pts = sel[noisy[sel.index] == hollow]
            if pts.empty:
                continue
            ax.scatter(
                pts[x],
                pts[y],
                s=60,
                color=color,
                facecolors="white" if hollow else color,
                label=None
                if g is None or (hollow and not pts.index.equals(sel.index))
                else f"{color_by}={g}",
                zorder=3,
                edgecolor=color if hollow else "black",
                linewidth=1.5 if hollow else 0.5,
            )
    front = pareto_front(list(d[x]), list(d[y]))
    ax.plot(
        d[x].iloc[front],
        d[y].iloc[front],
        "--",
        color="0.35",
        zorder=2,
        drawstyle="steps-post",
        label="Pareto front",
    )
    labels = [a for a in label_by if a in d]
    for i, row in d.iterrows():
        text = point_label(row, labels)
        if text:
            ax.annotate(
                text,
                (row[x], row[y]),
                textcoords="offset points",
                xytext=(6, 5 if i in front else -11),
                fontsize=8,
                fontweight="bold" if i in front else "normal",
            )
    ax.set_xlabel(_axis_label(x))
    ax.set_ylabel(_axis_label(y))
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12, y=0.15)  # room for the labels of the points at the edges
    if C.higher_is_better(x) is False:
        ax.set_xlim(0, float(d[x].max()) * 1.15)
    ax.set_title(title or f"{y} vs {x} ({len(d)} jobs; up and left is better)", fontsize=10)
    if noisy.any():
        ax.text(
            0.01,
            0.01,
            f"hollow: p90/p50 ≥ {C.NOISY_SPREAD}, timed under load; whiskers reach the p90",
            transform=ax.transAxes,
            fontsize=7.5,
            color="#9a5b00",
        )
    ax.legend(fontsize=8, loc="best")  # not over a point
    fig.tight_layout()
    return fig


def point_label(row: pd.Series, keys: Sequence[str]) -> str:
    """The row's choices, without the quantization axes of a float baseline."""
    from qexp.report.table import FLOAT_QUANTIZERS, QUANT_ONLY_AXES

    is_float = str(row.get("precision") or "") in ("fp32", "fp16") or (
        row.get("quantizer") in FLOAT_QUANTIZERS
    )
    return " ".join(str(row[k]) for k in keys if not (is_float and k in QUANT_ONLY_AXES))


def _axis_label(metric: str) -> str:
    m = C.base(metric)
    if m.startswith("map"):
        return f"{metric} (COCO mAP, 0..1)"
    if m.startswith("latency_ms"):
        return f"{metric} (ms)"
    if m.startswith("throughput_ips"):
        return f"{metric} (images/s)"
    return metric


def sensitivity(scores: Mapping[str, float], metric: str = "", top: int = 25) -> Figure:
    """Layers ranked by how much quantizing each one alone hurts (largest first)."""
    if not scores:
        raise ValueError("no sensitivity scores to plot")
    items = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:top]
    names = [k for k, _ in items][::-1]
    vals = [v for _, v in items][::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(items) + 1.2))
    colors = [PALETTE[3] if i >= len(items) - 5 else PALETTE[0] for i in range(len(items))]
    ax.barh(names, vals, color=colors)
    ax.set_xlabel(f"sensitivity ({metric})" if metric else "sensitivity")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    shown = f"top {len(items)} of {len(scores)}" if len(scores) > len(items) else "all"
    ax.set_title(f"Per-layer quantization sensitivity ({shown} layers)", fontsize=10)
    fig.tight_layout()
    return fig


def calibration_histogram(
    hist: np.ndarray,
    edges: np.ndarray,
    clips: Mapping[str, float],
    tensor: str = "",
    amax: float | None = None,
) -> Figure:
    """The |x| histogram of one tensor (log counts) with each observer's clip value."""
    hist = np.asarray(hist, dtype=float)
    edges = np.asarray(edges, dtype=float)
    if hist.size == 0 or hist.sum() == 0:
        raise ValueError(f"empty calibration histogram for {tensor or 'tensor'}")
    last = int(np.nonzero(hist)[0].max()) + 1
    right = max([edges[min(last, len(edges) - 1)], *clips.values(), amax or 0.0])
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.stairs(hist, edges, fill=True, color="0.75", label="|x| histogram")
    ax.set_yscale("log")
    for i, (name, clip) in enumerate(sorted(clips.items(), key=lambda kv: kv[1])):
        ax.axvline(clip, color=PALETTE[i % len(PALETTE)], lw=1.6, label=f"{name}: {clip:.4g}")
    ax.set_xlim(0, right * 1.03)
    ax.set_xlabel("|activation|")
    ax.set_ylabel("count (log)")
    ax.set_title(f"Calibration histogram and clip per observer — {tensor}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig
