"""The INT8 frontier of a sweep of engines: each engine's mAP50-95 Δ vs its backend's fp16
engine against its batch-32 throughput ratio to that engine (issue 15: which recipe gives the
fastest engine that keeps its accuracy), as a table and a plot with the Pareto front and the
target box.

What an engine is, and which is the reference, comes from the records, not from a backend's
name: a row is an engine when its backend logged the engine it built (``engine_bytes``), and
the reference of a backend's engines is its engine at the reference precision (the records'
``precision``). Any backend that builds engines, and built one at that precision, gets a
frontier; each backend's engines are read against their own.

:func:`frontier` turns a loaded sweep (:mod:`qexp.report.load`) into a numeric table, one row
per engine, each read against the fp16 engine of its group (its backend, model, data, ...
where the sweep has several); :func:`to_markdown` / :func:`to_html` print it and :func:`plot`
draws it.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from qexp.config.axes import QUANT_ONLY_AXES, RECIPE
from qexp.contracts import Precision
from qexp.record import FINISHED
from qexp.report import intervals, plots
from qexp.report.columns import short_labels
from qexp.report.table import (
    FLOAT_QUANTIZERS,
    in_sweep_order,
    varying_axes,
    varying_knobs,
    with_knobs,
)

REFERENCE = str(Precision.fp16)  # the precision of the engine every row is read against
ENGINE = "engine_bytes"  # the metric a backend logs for the engine it built: the row is an engine
MAP, B32, B1 = "map50_95", "throughput_ips_b32", "latency_ms_p50"
# issue 15's target: >= 1.4x the fp16 engine's batch-32 throughput at <= 0.3 pt mAP50-95 loss
TARGET_RATIO, TARGET_DELTA_PT = 1.4, -0.3
FLOAT_KINDS = ("fp32", "fp16")
TITLE = f"INT8 frontier: engines vs the {REFERENCE} engine of their backend"
PNG = "frontier.png"


class NoFrontier(ValueError):
    """The sweep has INT8 engines but the frontier cannot be drawn; the message says why."""


@dataclass(frozen=True)
class Column:
    title: str
    key: str  # a column of the frontier table
    fmt: str  # format spec of the number ("" for text)


COLUMNS = (
    Column("row", "label", ""),
    Column("mAP50-95", MAP, ".4f"),
    Column(f"Δ vs {REFERENCE} (pt)", "delta_pt", "+.2f"),
    Column("95% CI (pt)", "ci", ""),  # paired bootstrap over images (report/intervals.py)
    Column("img/s b32", B32, ".0f"),
    Column(f"×{REFERENCE} b32", "ratio_b32", ".2f"),
    Column("p50 b1 ms", B1, ".3f"),
    Column(f"×{REFERENCE} b1", "ratio_b1", ".2f"),
    Column("reformat layers", "reformat_layers", ".0f"),
    Column("INT8 layers", "layers_int8", ".0f"),
)
# the results-table script's extras: build time and the engine's mAP minus its torch twin's
EXTRA_COLUMNS = (
    Column("build s", "build_s", ".0f"),
    Column("Δ vs torch twin (pt)", "twin_pt", "+.2f"),
)
_METRICS = (MAP, B32, B1, "reformat_layers", "layers_int8", "build_s", "align_map_delta")


def engines_of(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the backends that build engines (those whose FINISHED rows logged one),
    whatever their status."""
    if ENGINE not in df or "backend" not in df:
        return df.iloc[0:0]
    built = df[(df["status"] == FINISHED) & df[ENGINE].notna()]
    return df[df["backend"].isin(set(built["backend"]))]


def frontier(df: pd.DataFrame, rows: list[str] | None = None) -> pd.DataFrame | None:
    """One row per FINISHED engine (columns: label, the metrics, ``delta_pt``, ``ratio_b32``,
    ``ratio_b1``, ``twin_pt``, ``front``, ``target``, ``reference``), read against the engine
    of its backend (and group) at the ``REFERENCE`` precision. None when the runs hold no INT8
    engine (nothing to draw); :class:`NoFrontier` when they hold INT8 engines but no reference
    engine for them. ``rows``: the comparison table's row keys (they tell the engines apart in
    the labels)."""
    if MAP not in df or B32 not in df:
        return None
    built = engines_of(df)
    built = built[(built["status"] == FINISHED) & built[ENGINE].notna()]
    backends = list(dict.fromkeys(built["backend"]))
    rows = [r for r in (rows or _row_keys(df)) if r != "backend" or len(backends) > 1]
    df = with_knobs(df, rows)
    engines = df[df.index.isin(built.index) & df[MAP].notna() & df[B32].notna()]
    # one point per row: a resumed job is the same record in another sweep
    engines = engines.sort_values("started_at", kind="stable").drop_duplicates(
        "record_id", keep="last"
    )
    engines = in_sweep_order(engines)
    keys = [r for r in rows if r in engines]
    if keys:
        engines = engines.drop_duplicates(keys, keep="last")
    int8 = engines[_is_int8(engines)]
    if int8.empty:
        return None
    refs = engines[_precision(engines) == REFERENCE]
    if refs.empty:
        raise NoFrontier(
            f"INT8 frontier not drawn: no FINISHED {REFERENCE} engine of backend="
            f"{','.join(map(str, dict.fromkeys(int8['backend'])))} to read the {len(int8)} INT8 "
            f"engine(s) against; add recipe={REFERENCE} to the sweep"
        )
    # the fp16 engines a sweep holds per backend and model (data, imgsz, ...): each engine is
    # read against its own; never split by what fp16 does not read (observer, quantizer.*)
    group = [k for k in keys if not _quant_key(k) and (k == "backend" or refs[k].nunique() > 1)]
    engines = engines.assign(label=_labels(engines, keys, group))
    out, notes = [], []
    for key, members in _groups(engines, group):
        ref = refs
        for g, v in zip(group, key, strict=True):
            ref = ref[ref[g].astype(str) == v]
        where = " ".join(f"{g}={v}" for g, v in zip(group, key, strict=True))
        if ref.empty:
            notes.append(f"{where}: no {REFERENCE} engine, its {len(members)} engine(s) left out")
            continue
        out.append(_read_against(members, ref.iloc[-1]).assign(group=where))
    if not out:
        raise NoFrontier("INT8 frontier not drawn: " + "; ".join(notes))
    table = pd.concat(out).reset_index(drop=True)
    table.attrs.update(
        group=group, notes=notes, backends=backends, reference={"precision": REFERENCE}
    )
    return table


def _row_keys(df: pd.DataFrame) -> list[str]:
    return varying_axes(df) + varying_knobs(df)


def _quant_key(key: str) -> bool:
    axis = key.split(".", 1)[0]
    return key == RECIPE or axis == "quantizer" or axis in QUANT_ONLY_AXES


def _precision(df: pd.DataFrame) -> pd.Series:
    return df["precision"].astype(str) if "precision" in df else pd.Series("", index=df.index)


def _is_int8(df: pd.DataFrame) -> pd.Series:
    int8 = pd.to_numeric(df.get("layers_int8", pd.Series(index=df.index)), errors="coerce")
    return (_precision(df) == str(Precision.int8)) | (int8 > 0)


def _groups(df: pd.DataFrame, group: list[str]):
    if not group:
        yield (), df
        return
    for key, members in df.groupby([df[g].astype(str) for g in group], sort=False):
        yield tuple(key), members


def _read_against(members: pd.DataFrame, ref: pd.Series) -> pd.DataFrame:
    t = pd.DataFrame({"label": members["label"]}, index=members.index)
    for m in _METRICS:
        t[m] = pd.to_numeric(members[m], errors="coerce") if m in members else math.nan
    t["quantizer"] = members["quantizer"]
    t["precision"] = members.get("precision")
    t["delta_pt"] = (t[MAP] - float(ref[MAP])) * 100
    t["ratio_b32"] = t[B32] / float(ref[B32])
    ref_b1 = pd.to_numeric(pd.Series([ref.get(B1)]), errors="coerce").iloc[0]
    t["ratio_b1"] = ref_b1 / t[B1]  # >1: faster than the reference engine, as the b32 ratio
    t["twin_pt"] = t["align_map_delta"] * 100
    t["reference"] = members["record_id"] == ref["record_id"]
    cis = {i: intervals.delta_of(r, ref) for i, r in members.iterrows()}
    t["ci"] = [intervals.fmt(cis[i], -TARGET_DELTA_PT) if cis[i] else None for i in t.index]
    # higher ratio and higher Δ are better; pareto_front wants lower x
    front = plots.pareto_front(list(-t["ratio_b32"]), list(t["delta_pt"]))
    t["front"] = [i in front for i in range(len(t))]
    t["target"] = (t["ratio_b32"] >= TARGET_RATIO) & (t["delta_pt"] >= TARGET_DELTA_PT)
    return t


def _labels(engines: pd.DataFrame, keys: list[str], group: list[str]) -> list[str]:
    """The recipe (and the group) where the sweep has recipes, else the row keys each engine
    reads: an axis its quantizer does not use (its config is the bare neutral choice, so no
    ``axis.*`` setting was recorded) says nothing about it."""
    rows = [r for _, r in engines.iterrows()]
    if RECIPE in keys and all(isinstance(r.get(RECIPE), str) for r in rows):
        keys = [RECIPE, *group]
    short = {k: short_labels([r.get(k) for r in rows]) for k in keys}
    out = []
    for r in rows:
        is_float = r.get("quantizer") in FLOAT_QUANTIZERS or r.get("precision") in FLOAT_KINDS
        parts = []
        for k in keys:
            if k in QUANT_ONLY_AXES and (is_float or not _reads(r, k)):
                continue
            v = r.get(k)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue  # a setting this job did not record
            if k == "quantizer" and v == "none":
                v = "fp32"
            text = short[k].get(v, str(v))
            # a swept config value names its key: "qdq_rules=trt", not a bare "trt"
            parts.append(f"{k.rsplit('.', 1)[-1]}={text}" if "." in k else text)
        out.append(" ".join(parts) or str(r.get("run_name")))
    if len(set(out)) < len(out):  # never two points with one name
        out = [f"{o} [{r.get('run_name')}]" for o, r in zip(out, rows, strict=True)]
    return out


def _reads(row: pd.Series, axis: str) -> bool:
    params = row.get("params")
    if not isinstance(params, dict) or not params:
        return True  # nothing recorded to tell: keep it
    return any(k.startswith(f"{axis}.") for k in params)


def _cell(col: Column, v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if not col.fmt:
        return str(v)
    return format(float(v), col.fmt)  # type: ignore[arg-type]


def cells(table: pd.DataFrame, extra: bool = False) -> tuple[list[Column], list[dict[str, str]]]:
    """Display columns (those with a value in some row) and formatted cells per row."""
    cols = [*COLUMNS, *(EXTRA_COLUMNS if extra else ())]
    cols = [c for c in cols if c.key == "label" or table[c.key].notna().any()]
    out = []
    for _, r in table.iterrows():
        row = {c.title: _cell(c, r[c.key]) for c in cols}
        if r["reference"]:
            for c in cols:
                if c.key in ("delta_pt", "ci", "ratio_b32", "ratio_b1"):
                    row[c.title] = "base"
        out.append(row)
    return cols, out


def caption(table: pd.DataFrame) -> list[str]:
    """What the table says, in sentences: the reference, the front, the target box."""
    group = table.attrs.get("group") or []
    per = f" of its {', '.join(group)}" if group else ""
    backends = ", ".join(map(str, table.attrs.get("backends") or []))
    lines = [
        f"Each {backends} engine read against the {REFERENCE} engine{per}: "
        f"Δ in mAP50-95 points, ×{REFERENCE} its batch-32 throughput (b32) or batch-1 p50 "
        f"speed (b1) over the {REFERENCE} engine's, above 1 faster.",
        "**bold**: on the Pareto front (no other engine is both faster at batch 32 and "
        "more accurate).",
    ]
    hits = table[table["target"]]["label"].tolist()
    box = f"≥ {TARGET_RATIO}× {REFERENCE} at batch 32 with ≤ {-TARGET_DELTA_PT} pt mAP50-95 loss"
    lines.append(
        f"In the target box ({box}): {', '.join(hits)}." if hits else f"No engine reaches {box}."
    )
    if table["ci"].notna().any():
        lines.append(intervals.note(-TARGET_DELTA_PT))
    lines += [f"- {n}" for n in table.attrs.get("notes") or []]
    return lines


def to_markdown(table: pd.DataFrame, extra: bool = False, image: str | None = None) -> str:
    """The frontier table (``extra``: build time and the torch-twin Δ too), its caption and,
    when given, a link to the plot's PNG."""
    cols, rows = cells(table, extra)
    for r, front in zip(rows, table["front"], strict=True):
        if front:
            r["row"] = f"**{r['row']}**"
    titles = [c.title for c in cols]
    w = {t: max(len(t), *(len(r[t]) for r in rows)) for t in titles}
    num = {c.title for c in cols if c.fmt}

    def line(vals: dict[str, str]) -> str:
        return "| " + " | ".join(
            vals[t].rjust(w[t]) if t in num else vals[t].ljust(w[t]) for t in titles
        ) + " |"  # fmt: skip

    sep = "|" + "|".join("-" * (w[t] + 1) + ":" if t in num else "-" * (w[t] + 2) for t in titles)
    body = [line({t: t for t in titles}), sep + "|"] + [line(r) for r in rows]
    head = [f"### {TITLE}", ""]
    if image:
        head += [f"![INT8 frontier]({image})", ""]
    return "\n".join(head + body + [""] + caption(table))


def to_html(table: pd.DataFrame) -> str:
    cols, rows = cells(table)
    head = "".join(f"<th>{html.escape(c.title)}</th>" for c in cols)
    body = []
    for r, front in zip(rows, table["front"], strict=True):
        tds = []
        for c in cols:
            cls = ["num"] if c.fmt else []
            if front and c.key == "label":
                cls.append("best")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            tds.append(f"<td{attr}>{html.escape(r[c.title])}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    text = [html.escape(s.lstrip("- ")).replace("**bold**", "<b>green</b>") for s in caption(table)]
    return (
        f'<table class="qexp frontier"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>" + "".join(f"<p>{t}</p>" for t in text)
    )


def plot(table: pd.DataFrame) -> Figure:
    """Δ mAP50-95 (pt) vs the batch-32 throughput ratio to the reference, one point per engine,
    the Pareto front of each group as a dashed line, the target box shaded."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    parts = list(table.groupby("group", sort=False))
    for gi, (name, t) in enumerate(parts):
        color = plots.PALETTE[gi % len(plots.PALETTE)]
        ref = t[t["reference"]]
        rest = t[~t["reference"]]
        ax.scatter(rest["ratio_b32"], rest["delta_pt"], s=55, color=color, edgecolor="black",
                   linewidth=0.5, zorder=3, label=str(name) or None)  # fmt: skip
        ax.scatter(ref["ratio_b32"], ref["delta_pt"], s=140, marker="*", color=color,
                   edgecolor="black", linewidth=0.5, zorder=4,
                   label=f"{REFERENCE} engine" if gi == 0 else None)  # fmt: skip
        front = t[t["front"]].sort_values("ratio_b32")
        ax.plot(front["ratio_b32"], front["delta_pt"], "--", color="0.35", zorder=2,
                drawstyle="steps-pre", label="Pareto front" if gi == 0 else None)  # fmt: skip
        for _, r in t.iterrows():
            ax.annotate(
                str(r["label"]),
                (r["ratio_b32"], r["delta_pt"]),
                textcoords="offset points",
                xytext=(6, 5 if r["front"] else -11),
                fontsize=8,
                fontweight="bold" if r["front"] else "normal",
            )
    ax.axvline(TARGET_RATIO, color="#1b7f2a", lw=1, ls=":")
    ax.axhline(TARGET_DELTA_PT, color="#1b7f2a", lw=1, ls=":")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.margins(x=0.15, y=0.2)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    x1, y1 = max(x1, TARGET_RATIO * 1.05), max(y1, 0.2)
    y0 = min(y0, TARGET_DELTA_PT * 1.5)
    ax.axvspan(TARGET_RATIO, x1, ymin=(TARGET_DELTA_PT - y0) / (y1 - y0), color="#e3f4e1",
               zorder=0, label=f"target: ≥{TARGET_RATIO}×, ≥{TARGET_DELTA_PT} pt")  # fmt: skip
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(f"batch-32 throughput / the {REFERENCE} engine's (×)")
    ax.set_ylabel(f"mAP50-95 Δ vs the {REFERENCE} engine (points)")
    backends = ", ".join(map(str, table.attrs.get("backends") or []))
    ax.set_title(f"INT8 frontier ({len(table)} {backends} engines; up and right is better)",
                 fontsize=10)  # fmt: skip
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig
