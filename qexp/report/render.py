"""A comparison table as markdown (terminal-readable), CSV, JSON or an HTML fragment."""

from __future__ import annotations

import html
import json
import math
import re

import pandas as pd

from qexp.report import columns as C
from qexp.report.table import best_rows, display_cells

BEST_MD = "**{}**"  # bold in rendered markdown, still plain to read in a terminal
FORMATS = ("md", "csv", "html", "json")


def render(table: pd.DataFrame, fmt: str = "md", mark_best: bool = True) -> str:
    """Markdown/HTML carry formatted cells with the best value per column marked."""
    if fmt == "csv":
        return _plain(table).to_csv(index=False)
    if fmt == "json":
        return to_json(table)
    if fmt == "html":
        return to_html(table, mark_best)
    if fmt == "md":
        return to_markdown(table, mark_best)
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in ("note",) if c in table and not table[c].any()])


def to_json(table: pd.DataFrame) -> str:
    """Rows as records plus what the table means (rows, baseline, best per column, notes)."""
    rows = json.loads(_plain(table).to_json(orient="records"))
    best = {c: sorted(r) for c, r in best_rows(table).items()}
    meta = {k: table.attrs.get(k) for k in ("rows", "cols", "baseline", "notes")}
    return json.dumps({**meta, "best": best, "table": rows}, indent=2, default=str)


def to_markdown(table: pd.DataFrame, mark_best: bool = True) -> str:
    if table.columns.empty:
        return "(no FINISHED job to compare)" + _footer(table, False)
    cells = display_cells(table)
    best = best_rows(table) if mark_best else {}
    cols = [c for c in table.columns if c != "note" or any(r[c] for r in cells)]
    for col, rows in best.items():
        for i in rows:
            cells[i][col] = BEST_MD.format(cells[i][col])
    numeric = {c for c in cols if c in table.attrs.get("kinds", {})}
    text = [[str(r[c]).replace("|", "\\|") for c in cols] for r in cells]
    widths = [max([len(c)] + [len(t[j]) for t in text]) for j, c in enumerate(cols)]

    def line(vals: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                v.rjust(w) if c in numeric else v.ljust(w)
                for v, w, c in zip(vals, widths, cols, strict=True)
            )
            + " |"
        )

    sep = "|" + "|".join(
        ("-" * (w + 1) + ":") if c in numeric else ("-" * (w + 2))
        for w, c in zip(widths, cols, strict=True)
    )
    out = [line(cols), sep + "|"] + [line(t) for t in text]
    return "\n".join(out) + _footer(table, mark_best and bool(best))


def _has_derived(table: pd.DataFrame) -> bool:
    return any(k != "metric" for k, _ in table.attrs.get("kinds", {}).values())


def _derived_words(table: pd.DataFrame) -> str:
    kinds = {k for k, _ in table.attrs.get("kinds", {}).values()}
    return " and ".join(w for k, w in (("delta", "Δ"), ("speedup", "speedup")) if k in kinds)


def _footer(table: pd.DataFrame, marked: bool) -> str:
    lines = []
    base = table.attrs.get("baseline") or {}
    if base and _has_derived(table):
        lines.append(
            f"{_derived_words(table)} {'is' if ' and ' not in _derived_words(table) else 'are'}"
            " read against the "
            + " ".join(f"{k}={v}" for k, v in base.items())
            + " row of each group."
        )
    if marked:
        lines.append("**bold**: best value in its column.")
    lines += [f"- {n}" for n in table.attrs.get("notes") or []]
    return ("\n\n" + "\n".join(lines)) if lines else ""


def to_html(table: pd.DataFrame, mark_best: bool = True) -> str:
    """An HTML <table> fragment for the report page. Classes: num (metric cells), label (row
    keys and status: fixed widths, pinned left so they stay in view when a wide table
    scrolls), note, best, neg/pos (deltas), noisy (a p90/p50 under load), status-<STATUS>
    on rows. Headers and labels break after ``_ . / -`` only, numbers never."""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.attrs.get("notes") or [])
    if table.columns.empty:
        return "<p>No FINISHED job to compare.</p>" + (f"<ul>{notes}</ul>" if notes else "")
    cells = display_cells(table)
    best = best_rows(table) if mark_best else {}
    kinds = table.attrs.get("kinds", {})
    cols = [c for c in table.columns if c != "note" or any(r[c] for r in cells)]
    pinned = _pinned_layout([c for c in cols if c not in kinds and c != "note"], cells)

    def cell(tag: str, c: str, text: str, cls: list[str]) -> str:
        style = ""
        if c in pinned:
            cls = ["label", *cls]
            style = f' style="{pinned[c]}"'
        elif c == "note":
            cls = ["note", *cls]
        attr = f' class="{" ".join(cls)}"' if cls else ""
        # a number never breaks (Chromium breaks at <wbr> even under white-space: nowrap)
        body = html.escape(text) if "num" in cls else _breakable(text)
        return f"<{tag}{attr}{style}>{body}</{tag}>"

    head = "".join(cell("th", c, str(c), []) for c in cols)
    body = []
    for i, r in enumerate(cells):
        status = str(r.get("status", "FINISHED"))
        tds = []
        for c in cols:
            cls = []
            if c in kinds:
                cls.append("num")
                kind = kinds[c][0]
                v = table[c].iloc[i]
                if kind == "delta" and isinstance(v, float) and not math.isnan(v):
                    cls.append("neg" if v < -1e-12 else "pos")
                if kind == "spread" and isinstance(v, float) and v >= C.NOISY_SPREAD:
                    cls.append("noisy")
            if i in best.get(c, ()):
                cls.append("best")
            tds.append(cell("td", c, str(r[c]), cls))
        body.append(f'<tr class="status-{html.escape(status)}">{"".join(tds)}</tr>')
    base = table.attrs.get("baseline") or {}
    base = base if _has_derived(table) else {}
    caption = (
        f"{_derived_words(table)} against the "
        + html.escape(" ".join(f"{k}={v}" for k, v in base.items()))
        + " row of each group. "
        if base
        else ""
    ) + ("Bold: best in its column." if best else "")
    return (
        f'<table class="qexp"><caption>{caption}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>" + (f"<ul>{notes}</ul>" if notes else "")
    )


_BREAK_AFTER = re.compile(r"(?<=[_./-])")


def _pieces(text: str) -> list[str]:
    return [p for part in text.split() for p in _BREAK_AFTER.split(part) if p]


def _breakable(text: str) -> str:
    """Escaped text that may break after ``_ . / -`` (<wbr>), so "latency_ms_p50" wraps as
    "latency_ms_" / "p50" instead of widening its column or breaking mid-word."""
    return "<wbr>".join(html.escape(p) for p in _BREAK_AFTER.split(text))


def _pinned_layout(label_cols: list[str], cells: list[dict]) -> dict[str, str]:
    """An inline style per label column: a width from its longest unbreakable piece (at
    most C.LABEL_CHARS // 2 characters, 0.6 em each: a little over the page font's average),
    and the sticky left offset of the columns before it, so the whole label block stays
    pinned while the metrics scroll under it."""
    out, left = {}, "0px"
    for i, c in enumerate(label_cols):
        pieces = _pieces(str(c)) + [p for r in cells for p in _pieces(str(r[c]))]
        chars = min(max([len(p) for p in pieces] + [3]), C.LABEL_CHARS // 2)
        # padding 2 x 6 px and a 1 px right border (the first cell also a 1 px left one)
        width = f"calc({0.6 * chars + 0.4:.1f}em + {14 if i == 0 else 13}px)"
        out[c] = f"width:{width};min-width:{width};max-width:{width};left:{left}"
        left = f"calc({left} + {width})"
    return out
