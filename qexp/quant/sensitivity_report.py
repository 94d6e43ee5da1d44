"""The sensitivity analysis as files: a CSV of every run, a markdown summary of how the four
metrics' rankings agree, and a plot of the per-layer sensitivities."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qexp.quant.sensitivity_rank import METRICS, MODES, ranking, scores

ARTIFACTS = {"table": "sensitivity.csv", "summary": "sensitivity.md", "plot": "sensitivity.png"}


def frame(result: dict) -> pd.DataFrame:
    """One row per (mode, layer): raw metric values, sensitivity per metric and its rank (1 =
    most sensitive)."""
    df = pd.DataFrame(result["rows"])
    if df.empty:
        return df
    order = {n: i for i, n in enumerate(result["layers"])}
    df["order"] = df["layer"].map(order)
    for mode in df["mode"].unique():
        sel = df["mode"] == mode
        for m in METRICS:
            s = scores(result, mode, m)
            rank = {n: i + 1 for i, n in enumerate(ranking(result, mode, m))}
            df.loc[sel, f"sens_{m}"] = df.loc[sel, "layer"].map(s)
            df.loc[sel, f"rank_{m}"] = df.loc[sel, "layer"].map(rank).astype(int)
    return df.sort_values(["mode", "order"]).reset_index(drop=True)


def agreement(result: dict, mode: str, k: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Spearman rank correlation of the metrics' sensitivities, top-k overlap counts)."""
    s = pd.DataFrame({m: scores(result, mode, m) for m in METRICS})
    corr = s.corr(method="spearman")
    tops = {m: set(ranking(result, mode, m)[:k]) for m in METRICS}
    overlap = pd.DataFrame({a: {b: len(tops[a] & tops[b]) for b in METRICS} for a in METRICS})
    return corr, overlap


def markdown(result: dict, k: int = 5, top: int = 10) -> str:
    ref = result["reference"]
    lines = [
        f"# Layer sensitivity ({len(result['layers'])} layers, {result['images']} images)",
        "",
        f"float mAP50-95 {ref['float']['map']:.4f}; all layers quantized: mAP50-95 "
        f"{ref['quantized']['map']:.4f}, MSE {ref['quantized']['mse']:.4g}, cosine "
        f"{ref['quantized']['cosine']:.6f}, SQNR {ref['quantized']['sqnr']:.2f} dB",
    ]
    modes = [m for m in MODES if any(r["mode"] == m for r in result["rows"])]
    for mode in modes:
        ranks = {m: ranking(result, mode, m)[:top] for m in METRICS}
        tab = pd.DataFrame({m: ranks[m] for m in METRICS}, index=range(1, top + 1))
        corr, overlap = agreement(result, mode, k)
        lines += [
            "",
            f"## mode `{mode}`: top {top} layers per metric",
            "",
            tab.to_markdown(),
            "",
            "Spearman rank correlation between the metrics' sensitivities:",
            "",
            corr.round(3).to_markdown(),
            "",
            f"Layers shared by the metrics' top {k}:",
            "",
            overlap.to_markdown(),
        ]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """Per-layer sensitivity in execution order, one panel per metric and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if any(r["mode"] == m for r in result["rows"])]
    names = result["layers"]
    fig, axes = plt.subplots(
        len(METRICS), len(modes), figsize=(7 * len(modes), 10), squeeze=False, sharex=True
    )
    for j, mode in enumerate(modes):
        for i, m in enumerate(METRICS):
            s = scores(result, mode, m)
            top = set(ranking(result, mode, m)[:5])
            ax = axes[i][j]
            ax.bar(
                range(len(names)),
                [s[n] for n in names],
                color=["tab:red" if n in top else "tab:blue" for n in names],
            )
            ax.set_ylabel(m)
            ax.grid(True, axis="y", alpha=0.3)
            if i == 0:
                ax.set_title(f"sensitivity, mode {mode} (red: top 5)")
        axes[-1][j].set_xticks(range(len(names)))
        axes[-1][j].set_xticklabels(names, rotation=90, fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_artifacts(result: dict, directory: Path | str) -> dict[str, Path]:
    directory = Path(directory)
    out = {name: directory / file for name, file in ARTIFACTS.items()}
    frame(result).to_csv(out["table"], index=False)
    out["summary"].write_text(markdown(result))
    plot(result, out["plot"])
    return out
