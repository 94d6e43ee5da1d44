"""A sweep's comparison table: rows by the axes that vary, deltas against a baseline row.

``comparison_table`` returns a numeric DataFrame (good for CSV/JSON and plots) and keeps what
each column means in ``table.attrs``; :mod:`qexp.report.render` turns it into markdown/HTML
with the best value per column marked.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from qexp.config.axes import AXES, QUANT_ONLY_AXES, RECIPE
from qexp.record import FINISHED, SKIPPED, Equivalent
from qexp.report import columns as C
from qexp.report import intervals

# Float baselines, and the axes they do not read (a quantizer's observer, calibrator, ignore).
FLOAT_QUANTIZERS = ("none", "fp16")
# Config keys that never make two jobs different measurements.
_NOT_KNOBS = ("paths.", "tracking.")


class TableError(ValueError):
    """A table option that cannot be applied (names the option and what exists)."""


def varying_axes(df: pd.DataFrame) -> list[str]:
    """The axes whose choice varies, the recipe (a frontier sweep's row name) first."""
    axes = [a for a in (RECIPE, *AXES) if a in df and df[a].nunique(dropna=True) > 1]
    return axes or [a for a in ("model", "quantizer") if a in df]


def varying_knobs(df: pd.DataFrame) -> list[str]:
    """Dotted config keys swept beyond the axes (``model.imgsz=320,640``), in sweep order."""
    if "params" not in df or df.empty:
        return []
    params = pd.DataFrame(list(df["params"].map(lambda p: p if isinstance(p, dict) else {})))
    params.index = df.index
    keys = [
        k
        for k in params.columns
        if not k.startswith(_NOT_KNOBS) and params[k].nunique(dropna=True) > 1
    ]
    if not keys:
        return []
    # a key that varies only because the axis choice changed (quantizer.export with quantizer)
    # is part of that choice, not a knob of its own
    groups = [a for a in AXES if a in df]
    both = pd.concat([df[groups].fillna(""), params[keys]], axis=1)
    return [k for k in keys if (both.groupby(groups, dropna=False)[k].nunique() > 1).any()]


def parse_baseline(spec: str | None) -> dict[str, str] | None:
    """``"quantizer=none"`` or ``"quantizer=fp16,backend=torch"`` -> {axis: choice}."""
    if not spec:
        return None
    out = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise TableError(f"--baseline {spec!r}: expected AXIS=CHOICE[,AXIS=CHOICE]")
        out[key.strip()] = value.strip()
    return out


def infer_baseline(df: pd.DataFrame, rows: list[str]) -> dict[str, str] | None:
    """The fp32 row (quantizer=none) when the quantizer varies, else the fp16 one, else none."""
    if "quantizer" not in rows:
        return None
    done = df[df["status"] == "FINISHED"]["quantizer"].unique()
    for choice in ("none", "fp16"):
        if choice in done:
            return {"quantizer": choice}
    return None


def comparison_table(
    df: pd.DataFrame,
    metrics: list[str] | None = None,
    axes: list[str] | None = None,
    include_skipped: bool = True,
    cols: str | None = None,
    baseline: dict[str, str] | str | None = "auto",
    hide_equivalent: bool = True,
) -> pd.DataFrame:
    """Rows = jobs (latest record per row key), columns = row keys + status + metrics.

    ``axes``: row keys (axes or dotted config keys; default: those that vary). ``cols``: an
    axis whose choices become column groups (``map50_95 [torch]``). ``baseline``: {axis:
    choice} of the row that deltas/speedups are read against, "auto" (fp32, else fp16), or None.
    ``hide_equivalent``: fold jobs SKIPPED as repeats of a FINISHED row (an unread axis
    differs) into one note under the table. ``include_skipped=False``: FINISHED rows only
    (the latest FINISHED record per row key), the others counted in a note, the row keys those
    that vary among the rows shown, and no status column.
    """
    if df.empty:
        return df
    left_out: dict[str, int] = {}
    if not include_skipped:
        left = df[df["status"] != "FINISHED"]
        left_out = {str(s): int(n) for s, n in left["status"].value_counts().items()}
        df = df[df["status"] == "FINISHED"]
        if df.empty:
            out = pd.DataFrame()
            out.attrs.update(notes=[_left_out_note(left_out)], left_out=left_out, kinds={})
            return out
    df = with_knobs(df, axes)
    rows = list(axes) if axes else varying_axes(df) + varying_knobs(df)
    if cols:
        if cols not in df:
            raise TableError(f"--cols {cols!r}: not an axis (axes: {', '.join(AXES)})")
        rows = [r for r in rows if r != cols]
    missing = [r for r in rows if r not in df]
    if missing:
        raise TableError(f"--axes: unknown {missing} (axes: {', '.join(AXES)})")
    key = rows + ([cols] if cols else [])
    metrics = metrics or [m for m in C.DEFAULT_METRICS if m in df.columns]
    unknown = [m for m in metrics if m not in df.columns]
    if unknown and len(unknown) == len(metrics):
        raise TableError(f"--metrics: none of {unknown} was recorded")
    metrics = [m for m in metrics if m in df.columns]

    hidden = [a for a in varying_axes(df) + varying_knobs(df) if a not in key and a in df]
    notes = [
        f"{a} varies but is not a row key: each row shows the latest job with its key"
        for a in hidden
        if df[a].nunique() > 1
    ]
    df = df.sort_values("started_at", kind="stable").drop_duplicates(subset=key, keep="last")
    df = in_sweep_order(df)
    if hide_equivalent:
        df, folded = _fold_equivalent(df, key)
        notes += folded
    if cols:
        notes += _notes(df[df["status"] != "FINISHED"], key)
        df = df[df["status"] == "FINISHED"]
    out = df[key + ["status"] + metrics].copy()
    out["note"] = df["reason"].fillna("").where(df["status"] != "FINISHED", "")
    kinds: dict[str, tuple[str, str]] = {m: ("metric", m) for m in metrics}

    if baseline == "auto":
        baseline = infer_baseline(df, key)
    elif isinstance(baseline, str):
        baseline = parse_baseline(baseline)
    if baseline:
        bad = [a for a in baseline if a not in key]
        if bad:
            raise TableError(f"--baseline: {bad} is not a row key of this table ({key})")
        kinds.update(_add_deltas(out, key, baseline, metrics, df))
        if intervals.CI in out:
            notes.append(intervals.note())
    kinds.update(_add_spread(out, df, metrics))
    noisy = int((out[C.SPREAD] >= C.NOISY_SPREAD).sum()) if C.SPREAD in out else 0
    if noisy:
        notes.append(C.noisy_note(noisy))

    derived = {m: [c for c, (k, mm) in kinds.items() if mm == m and k != "metric"] for m in metrics}
    order = key + ["status"] + [c for m in metrics for c in [m, *derived[m]]] + ["note"]
    out = _sort_by_appearance(out[order], rows or key)
    if cols:
        out, kinds = _pivot(out, rows, cols, kinds)
    if left_out:
        notes.append(_left_out_note(left_out))
    if not include_skipped and "status" in out:
        out = out.drop(columns=["status"])  # every row is FINISHED
    out.attrs.update(
        rows=rows,
        cols=cols,
        kinds=kinds,
        baseline=baseline or {},
        notes=notes,
        key=key,
        left_out=left_out,
    )
    return out


def _left_out_note(left_out: dict[str, int]) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(left_out.items()))
    return f"not shown: {counts} (`qexp report --failed` lists them with the reason)"


def _add_spread(
    out: pd.DataFrame, df: pd.DataFrame, metrics: list[str]
) -> dict[str, tuple[str, str]]:
    """p90/p50 of the latency: near 1 on an idle machine; far above it, the latency was
    measured under load and its speedup (and Pareto point) cannot be trusted."""
    p50, p90 = "latency_ms_p50", "latency_ms_p90"
    if p50 not in metrics or p90 not in df or C.SPREAD in out:
        return {}
    ratio = pd.to_numeric(df[p90], errors="coerce") / pd.to_numeric(df[p50], errors="coerce")
    if ratio.notna().sum() == 0:
        return {}
    out[C.SPREAD] = ratio.where(out["status"] == "FINISHED")
    return {C.SPREAD: ("spread", p50)}


def in_sweep_order(df: pd.DataFrame) -> pd.DataFrame:
    """Jobs as their sweeps listed them (sweeps by start, then Hydra's job number, which is
    the job dir's name), so a resumed job keeps its place."""
    num = pd.to_numeric(
        df.get("job_dir", pd.Series("", index=df.index)).fillna("").map(lambda p: Path(p).name),
        errors="coerce",
    )
    sweep = df.get("sweep_id", pd.Series(None, index=df.index)).fillna("")
    first = df.groupby(sweep)["started_at"].transform("min")
    keys = pd.DataFrame({"first": first, "sweep": sweep, "num": num, "t": df["started_at"]})
    return df.loc[keys.sort_values(["first", "sweep", "num", "t"], kind="stable").index]


def _sort_by_appearance(out: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows in the order the sweep listed the choices (none,fp16,ptq), not alphabetical."""
    order = {k: {v: i for i, v in enumerate(dict.fromkeys(out[k]))} for k in by}
    ranks = pd.DataFrame({k: out[k].map(order[k]) for k in by}, index=out.index)
    return out.loc[ranks.sort_values(by, kind="stable").index].reset_index(drop=True)


def with_knobs(df: pd.DataFrame, wanted: list[str] | None = None) -> pd.DataFrame:
    """Expose dotted config keys (swept knobs, or asked for by name) as columns."""
    knobs = varying_knobs(df) + [k for k in (wanted or []) if "." in k]
    if not knobs:
        return df
    df = df.copy()
    for k in dict.fromkeys(knobs):
        df[k] = df["params"].map(lambda p, k=k: p.get(k) if isinstance(p, dict) else None)
    return df


def _fold_equivalent(df: pd.DataFrame, key: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Drop rows SKIPPED as repeats of a FINISHED job (their record's ``equivalent_to``); say
    so in one note per unread-axes reason (the fp32 row swept over four observers is one job,
    not four rows)."""
    twin = df["equivalent_to"] if "equivalent_to" in df else pd.Series(None, index=df.index)
    eq = (df["status"] == SKIPPED) & twin.map(
        lambda e: isinstance(e, Equivalent) and e.status == FINISHED
    )
    if not eq.any():
        return df, []
    why = pd.Series(
        [f"quantizer={q} does not use {', '.join(e.unread)}" for q, e in
         zip(df.loc[eq, "quantizer"], twin[eq], strict=True)],
        index=df.index[eq],
    )  # fmt: skip
    notes = []
    for reason, rows in df[eq].groupby(why, sort=False):
        which = ", ".join(" ".join(str(r[k]) for k in key) for _, r in rows.iterrows())
        notes.append(f"SKIPPED as the same job as a row above ({reason}): {which}")
    return df[~eq], notes


def _notes(df: pd.DataFrame, key: list[str]) -> list[str]:
    return [
        f"{' '.join(f'{k}={r[k]}' for k in key)}: {r['status']}"
        + (f" ({r['reason']})" if r.get("reason") else "")
        for _, r in df.iterrows()
    ]


def _add_deltas(
    out: pd.DataFrame,
    key: list[str],
    baseline: dict[str, str],
    metrics: list[str],
    df: pd.DataFrame,
) -> dict[str, tuple[str, str]]:
    """Δ / speedup columns, each row read against the baseline row of its own group; the
    mAP50-95 Δ with its paired bootstrap interval where the jobs saved their matches."""
    is_base = (out["status"] == "FINISHED") & pd.concat(
        [out[a].astype(str) == str(v) for a, v in baseline.items()], axis=1
    ).all(axis=1)
    base_rows = out[is_base]
    # match a row to the baseline of its group only on keys the baseline rows differ in, and
    # never on the quantization axes of a float baseline (it does not read them): the fp32
    # row (observer=minmax) is the baseline of every observer's int8 row
    float_base = (
        base_rows["quantizer"].isin(FLOAT_QUANTIZERS).all() if "quantizer" in out else False
    )
    group = [
        k
        for k in key
        if k not in baseline
        and base_rows[k].nunique(dropna=False) > 1
        and not (float_base and k in QUANT_ONLY_AXES)
    ]
    kinds: dict[str, tuple[str, str]] = {}

    def base_of(row: pd.Series) -> pd.Series | None:
        match = base_rows
        for g in group:
            match = match[match[g].astype(str) == str(row[g])]
        return match.iloc[0] if len(match) else None

    def base_value(row: pd.Series, m: str) -> float:
        b = base_of(row)
        return math.nan if b is None else float(b[m])

    for m in metrics:
        if m in C.DELTA_METRICS:
            col, kind = f"Δ{m}", "delta"
        elif m in C.SPEEDUP_METRICS:
            col, kind = f"speedup {m}", "speedup"
        else:
            continue
        vals = []
        for _, row in out.iterrows():
            b, v = base_value(row, m), row[m]
            if row["status"] != "FINISHED" or pd.isna(v):
                vals.append(math.nan)
            elif kind == "delta":
                vals.append(float(v) - b)
            else:
                vals.append(C.speedup(m, float(v), b))
        if not all(math.isnan(x) for x in vals):
            out[col] = vals
            kinds[col] = (kind, m)
    if "Δmap50_95" in out:
        cis = []
        for i, row in out.iterrows():
            ref = base_of(row)
            ok = row["status"] == "FINISHED" and ref is not None and ref.name != i
            d = intervals.delta_of(df.loc[i], df.loc[ref.name]) if ok and ref is not None else None
            cis.append(intervals.fmt(d))
        if any(cis):
            out[intervals.CI] = cis
            kinds[intervals.CI] = ("interval", "map50_95")
    return kinds


def _pivot(
    out: pd.DataFrame, rows: list[str], cols: str, kinds: dict[str, tuple[str, str]]
) -> tuple[pd.DataFrame, dict[str, tuple[str, str]]]:
    values = [c for c in out.columns if c in kinds]
    wide = out.pivot_table(index=rows, columns=cols, values=values, aggfunc="last", sort=False)
    choices = list(dict.fromkeys(out[cols]))
    flat, new_kinds = [], {}
    for v in values:
        for choice in choices:
            if (v, choice) in wide.columns:
                name = f"{v} [{choice}]"
                flat.append(((v, choice), name))
                new_kinds[name] = kinds[v]
    wide = wide[[c for c, _ in flat]]
    wide.columns = [n for _, n in flat]
    return wide.reset_index(), new_kinds


def best_rows(table: pd.DataFrame) -> dict[str, set[int]]:
    """Column -> row positions holding the best value (ties included). A batch-1 latency timed
    under load (its p90/p50 flagged) is never the best one: it may just be noise."""
    kinds: dict[str, tuple[str, str]] = table.attrs.get("kinds", {})
    finished = table["status"] == "FINISHED" if "status" in table else pd.Series(True, table.index)
    quiet = finished & ~(table[C.SPREAD] >= C.NOISY_SPREAD) if C.SPREAD in table else finished
    best: dict[str, set[int]] = {}
    for col, (kind, metric) in kinds.items():
        hib = True if kind == "speedup" else C.higher_is_better(metric)
        if hib is None or col not in table:
            continue
        if kind in ("delta", "spread", "interval"):
            continue  # a delta mirrors its metric; a spread is a warning, not a score
        timed = C.base(metric) in C.TIMED_WITH_SPREAD
        vals = pd.to_numeric(table[col], errors="coerce").where(quiet if timed else finished)
        if vals.notna().sum() < 2:
            continue
        target = vals.max() if hib else vals.min()
        best[col] = {i for i, v in enumerate(vals) if v == target}
    return best


def display_cells(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Formatted cells (strings) per row, for markdown and HTML."""
    kinds = table.attrs.get("kinds", {})
    base = table.attrs.get("baseline") or {}
    # long config values (model.weights=/a/b/c.pt) shortened, so metrics stay on screen
    labels = {
        c: C.short_labels(list(table[c]))
        for c in table.columns
        if c not in kinds and c not in ("status", "note")
    }
    out = []
    for _, row in table.iterrows():
        cells: dict[str, Any] = {}
        is_base = bool(base) and all(
            str(row[a]) == str(v) for a, v in base.items() if a in table.columns
        )
        for col in table.columns:
            v = row[col]
            kind, metric = kinds.get(col, ("", col))
            if kind in ("delta", "speedup") and is_base and not pd.isna(v):
                cells[col] = "base"
            elif kind == "spread":
                cells[col] = C.fmt_spread(v)
            elif col in labels and isinstance(v, str):
                cells[col] = labels[col].get(v, v)
            elif kind == "delta":
                cells[col] = C.fmt_delta(v)
            elif kind == "speedup":
                cells[col] = C.fmt_speedup(v)
            elif kind == "metric":
                cells[col] = C.fmt_value(metric, v)
            else:
                cells[col] = "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
        out.append(cells)
    return out
