"""A paper comparison (:func:`qexp.report.paper.compare`) as markdown or an HTML fragment: the
value table (theirs, ours, delta, verdict) and, where the data differ from the paper's, the Δ
table (each row's Δ vs the reference row, ours beside theirs) with the sentence saying why."""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from qexp.report import columns as C

PASS, MISS, NOT_RUN = "pass", "MISS", "not run"


def summary(table: pd.DataFrame) -> str:
    n = len(table)
    counts = table["verdict"].value_counts() if n else {}
    return (
        f"{counts.get(PASS, 0)}/{n} cells within ±{table.attrs.get('tolerance', 0):g}, "
        f"{counts.get(MISS, 0)} missed, {counts.get(NOT_RUN, 0)} not run"
    )


def _cells(table: pd.DataFrame) -> list[dict[str, str]]:
    return [
        {
            "row": r["row"],
            "precision": str(r["precision"] or ""),
            "metric": r["metric"],
            "theirs": C.fmt_value(r["metric"], r["theirs"]),
            "ours": C.fmt_value(r["metric"], r["ours"]),
            "delta": C.fmt_delta(r["delta"]),
            "verdict": r["verdict"],
            "note": r["note"],
        }
        for _, r in table.iterrows()
    ]


def _delta_cells(deltas: list[dict[str, Any]]) -> list[dict[str, str]]:
    def pt(v: float, ref: bool) -> str:
        return "base" if ref else ("" if math.isnan(v) else f"{v:+.2f}")

    return [
        {
            "row": d["row"],
            "metric": d["metric"],
            "theirs": C.fmt_value(d["metric"], d["theirs"]),
            "ours": C.fmt_value(d["metric"], d["ours"]),
            "their Δ (pt)": pt(d["their_delta"], d["reference"]),
            "our Δ (pt)": pt(d["our_delta"], d["reference"]),
            "gap (pt)": pt(d["gap"], d["reference"]),
            "note": d["note"],
        }
        for d in deltas
    ]


_NUM = {"theirs", "ours", "delta", "their Δ (pt)", "our Δ (pt)", "gap (pt)"}


def delta_heading(table: pd.DataFrame) -> str:
    return f"Δ vs the {table.attrs.get('delta_row')} row, ours beside the paper's"


def delta_sentence(table: pd.DataFrame) -> str:
    """Why the Δs are compared, not the values: the data differ from the paper's."""
    a = table.attrs
    theirs = f"theirs: {a['published_on']}; " if a.get("published_on") else ""
    return (
        f"The data differ from the paper's ({theirs}ours: {a.get('ran_on') or 'this sweep'}), "
        f"so its values are not ours to match: each row's Δ vs the {a.get('delta_row')} row "
        "(mAP points) is set beside the paper's Δ; gap = our Δ − their Δ."
    )


def _md_table(cells: list[dict[str, str]]) -> list[str]:
    cols = [c for c in cells[0] if c != "note" or any(r["note"] for r in cells)]
    w = {c: max(len(c), *(len(r[c]) for r in cells)) for c in cols}

    def line(vals: dict[str, str]) -> str:
        return (
            "| "
            + " | ".join(vals[c].rjust(w[c]) if c in _NUM else vals[c].ljust(w[c]) for c in cols)
            + " |"
        )

    sep = "|" + "|".join("-" * (w[c] + 1) + ":" if c in _NUM else "-" * (w[c] + 2) for c in cols)
    return [line({c: c for c in cols}), sep + "|"] + [line(r) for r in cells]


def to_markdown(table: pd.DataFrame) -> str:
    a = table.attrs
    head = [f"### {a.get('title') or a.get('name')}", ""]
    if a.get("source"):
        head.append(f"Source: {a['source']}")
    if a.get("needs"):
        head.append(f"Needs: {a['needs']}")
    if a.get("ran_on"):
        head.append(f"Ran on: {a['ran_on']}")
    cells, deltas = _cells(table), a.get("deltas")
    out = list(head)
    if cells:
        out += [""] + _md_table(cells) + ["", summary(table)]
    elif deltas is None:
        out += ["", "(the paper config has no cells)"]
    if deltas:
        out += ["", f"#### {delta_heading(table)}", "", delta_sentence(table), ""]
        out += _md_table(_delta_cells(deltas))
    return "\n".join(out)


def _html_table(cells: list[dict[str, str]], row_class: list[str] | None = None) -> str:
    cols = [c for c in cells[0] if c != "note" or any(r["note"] for r in cells)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for i, r in enumerate(cells):
        tds = "".join(
            f'<td class="{"num" if c in _NUM else c}">{html.escape(r[c])}</td>' for c in cols
        )
        cls = f' class="{row_class[i]}"' if row_class else ""
        rows.append(f"<tr{cls}>{tds}</tr>")
    return (
        f'<table class="qexp paper"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def to_html(table: pd.DataFrame) -> str:
    a = table.attrs
    parts = [f"<h2>{html.escape(str(a.get('title') or a.get('name')))}</h2>"]
    if a.get("source"):
        src = html.escape(str(a["source"]))
        link = src.split()[0] if src.startswith("http") else ""
        parts.append(
            f'<p>Source: <a href="{link}">{src}</a></p>' if link else f"<p>Source: {src}</p>"
        )
    for key in ("needs", "ran_on"):
        if a.get(key):
            label = "Needs" if key == "needs" else "Ran on"
            parts.append(f"<p>{label}: {html.escape(str(a[key]))}</p>")
    cells, deltas = _cells(table), a.get("deltas")
    if cells:
        verdicts = [{"pass": "pass", "MISS": "miss"}.get(r["verdict"], "notrun") for r in cells]
        parts.append(_html_table(cells, verdicts))
        parts.append(f"<p>{html.escape(summary(table))}</p>")
    if deltas:
        parts.append(f"<h3>{html.escape(delta_heading(table))}</h3>")
        parts.append(f"<p>{html.escape(delta_sentence(table))}</p>")
        parts.append(_html_table(_delta_cells(deltas)))
    return "\n".join(parts)
