"""A sweep's comparison table: one row per job, indexed by the axes that vary."""

from __future__ import annotations

import pandas as pd

from qexp.config.schema import AXES

# Columns shown by default, in order, when present.
DEFAULT_METRICS = (
    "map50_95",
    "map50",
    "torch/map50_95",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p50_b32",
    "throughput_ips_b32",
    "engine_bytes",
    "build_s",
    "layers_int8",
    "layers_fp16",
    "layers_fp32",
    "align_map_delta",
)


def varying_axes(df: pd.DataFrame) -> list[str]:
    axes = [a for a in AXES if a in df and df[a].nunique(dropna=True) > 1]
    return axes or [a for a in ("model", "quantizer") if a in df]


def comparison_table(
    df: pd.DataFrame,
    metrics: list[str] | None = None,
    axes: list[str] | None = None,
    include_skipped: bool = True,
) -> pd.DataFrame:
    """Rows = jobs (latest record per axis combination), columns = varying axes + metrics."""
    if df.empty:
        return df
    axes = axes or varying_axes(df)
    metrics = metrics or [m for m in DEFAULT_METRICS if m in df.columns]
    df = df.sort_values("started_at").drop_duplicates(subset=axes, keep="last")
    if not include_skipped:
        df = df[df["status"] == "FINISHED"]
    cols = axes + ["status"] + [m for m in metrics if m in df.columns]
    out = df[cols].copy()
    notes = df["reason"].fillna("")
    out["note"] = [n if s != "FINISHED" else "" for n, s in zip(notes, df["status"], strict=True)]
    return out.sort_values(axes, kind="stable").reset_index(drop=True)


def render(table: pd.DataFrame, fmt: str = "md") -> str:
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=2)
    if fmt == "html":
        return table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
    return table.to_markdown(index=False, floatfmt=".4g", missingval="")
