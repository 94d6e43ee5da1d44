"""A published table beside ours: each reference cell, our number, the delta, pass or miss.

A paper config (``conf/paper/NAME.yaml``, schema :class:`qexp.config.schema.PaperConfig`)
holds the sweep and the published cells; its sweep logs into experiment ``paper_<NAME>``.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from qexp.record import FINISHED, RECORD_FILE, Equivalent
from qexp.report import columns as C
from qexp.report.load import artifact_path

PASS, MISS, NOT_RUN = "pass", "MISS", "not run"
PREFIX = "paper_"
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def available() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "paper").glob("*.yaml"))


def load_paper(name: str) -> dict[str, Any]:
    """The ``paper`` node of conf/paper/NAME.yaml, composed (and checked) by Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from qexp.config.store import register_configs

    if name not in available():
        raise ValueError(f"no paper config {name!r} in {CONF_DIR / 'paper'} (have: {available()})")
    register_configs()
    # at the end of a sweep (the report callback) Hydra is still initialised: compose in a
    # clean global state, then put the sweep's back
    gh = GlobalHydra.instance()
    saved = gh.hydra if gh.is_initialized() else None
    gh.clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"paper={name}"])
    finally:
        if saved is not None:
            GlobalHydra.instance().initialize(saved)
    paper = OmegaConf.to_container(cfg.paper, resolve=True)
    assert isinstance(paper, dict)
    return {str(k): v for k, v in paper.items()}


def paper_from_job(config: Path | None) -> dict[str, Any] | None:
    """The paper node a job ran under (its ``config.yaml``), or None."""
    if config is None or not config.exists():
        return None
    cfg = OmegaConf.load(config)
    node = cfg.get("paper") if isinstance(cfg, DictConfig) else None
    paper = OmegaConf.to_container(node, resolve=True) if node else None
    return {str(k): v for k, v in paper.items()} if isinstance(paper, dict) else None


def paper_for(df: pd.DataFrame, experiment: str | None, name: str | None) -> dict | None:
    """The paper to compare with: by name, else the one the jobs ran under (its current
    conf/paper file when there is one), else by the experiment name ``paper_<NAME>``."""
    if name:
        return load_paper(name)
    for _, row in df.iterrows():
        found = paper_from_job(artifact_path(row, "config.yaml"))
        if found:
            # the reference numbers as they are now (corrected since?), else as the job had them
            name = str(found.get("name", ""))
            return load_paper(name) if name in available() else found
    if experiment and experiment.startswith(PREFIX) and experiment[len(PREFIX) :] in available():
        return load_paper(experiment[len(PREFIX) :])
    return None


def _row_label(row: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in row.items())


def compare(df: pd.DataFrame, paper: dict[str, Any]) -> pd.DataFrame:
    """One row per published cell: theirs, ours (the latest finished job with those choices),
    ours - theirs, and pass (|delta| <= tolerance) / MISS / not run."""
    tol = float(paper.get("tolerance", 0.01))
    done = df[df["status"] == "FINISHED"].sort_values("started_at", kind="stable")
    out = []
    for cell in paper.get("cells") or []:
        row, metric, theirs = dict(cell["row"]), cell.get("metric", "map50_95"), cell["value"]
        bad = [a for a in row if a not in df and "." not in a]
        if bad:
            raise ValueError(f"paper {paper.get('name')}: cell row {row} names unknown axes {bad}")
        match = _matching(done, row)
        ours, note = math.nan, ""
        if len(match) and metric in match and pd.notna(match[metric].iloc[-1]):
            ours = float(match[metric].iloc[-1])
        elif not len(match):
            ours, note = _from_equivalent(df, row, metric)
        delta = ours - float(theirs)
        if math.isnan(ours):
            verdict, note = NOT_RUN, _why_not_run(df, row, metric)
        else:
            verdict = PASS if abs(delta) <= tol + 1e-12 else MISS
        out.append(
            {
                "row": _row_label(row),
                "precision": match["precision"].iloc[-1] if len(match) else "",
                "metric": metric,
                "theirs": float(theirs),
                "ours": ours,
                "delta": delta,
                "verdict": verdict,
                "note": note,
            }
        )
    table = pd.DataFrame(out)
    ran = df[df["status"] == "FINISHED"] if len(done) else df
    table.attrs.update(
        ran_on=", ".join(
            f"{a}={'/'.join(str(v) for v in dict.fromkeys(ran[a].dropna()))}"
            for a in ("model", "data", "backend")
            if a in ran and len(ran)
        ),
        name=paper.get("name", ""),
        title=paper.get("title", ""),
        source=paper.get("source", ""),
        needs=paper.get("needs", ""),
        tolerance=tol,
    )
    return table


def _matching(df: pd.DataFrame, row: dict[str, str]) -> pd.DataFrame:
    """Jobs with these choices (axes, or dotted config keys such as quantizer.impl)."""
    match = df
    for a, v in row.items():
        if a in match:
            col = match[a]
        elif "params" in match:
            col = match["params"].map(lambda p, a=a: p.get(a) if isinstance(p, dict) else None)
        else:
            return match.iloc[0:0]
        match = match[col.astype(str) == str(v)]
    return match


def _from_equivalent(df: pd.DataFrame, row: dict[str, str], metric: str) -> tuple[float, str]:
    """A job SKIPPED as equivalent to a FINISHED one measured the same thing: use that one's
    row (or, when it is not loaded, its record on this machine)."""
    for eq in _matching(df, row).get("equivalent_to", pd.Series(dtype=object)).dropna()[::-1]:
        if not isinstance(eq, Equivalent) or eq.status != FINISHED:
            continue
        twin = df[(df["job_dir"] == eq.job_dir) & (df["status"] == FINISHED)]
        if len(twin) and metric in twin and pd.notna(twin[metric].iloc[-1]):
            return float(twin[metric].iloc[-1]), f"from the equivalent job {eq.job_dir}"
        try:
            rec = json.loads((Path(eq.job_dir) / RECORD_FILE).read_text())
        except (OSError, ValueError):
            continue
        if metric in (rec.get("metrics") or {}):
            return float(rec["metrics"][metric]), f"from the equivalent job {eq.job_dir}"
    return math.nan, ""


def _why_not_run(df: pd.DataFrame, row: dict[str, str], metric: str) -> str:
    match = _matching(df, row)
    if match.empty:
        return "no job with these choices in the sweep"
    last = match.sort_values("started_at").iloc[-1]
    if last["status"] == "FINISHED":
        return f"the job recorded no {metric}"
    reason = str(last.get("reason") or "").strip()
    return f"{last['status']}" + (f": {reason}" if reason else "")


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


def to_markdown(table: pd.DataFrame) -> str:
    a = table.attrs
    head = [f"### {a.get('title') or a.get('name')}", ""]
    if a.get("source"):
        head.append(f"Source: {a['source']}")
    if a.get("needs"):
        head.append(f"Needs: {a['needs']}")
    if a.get("ran_on"):
        head.append(f"Ran on: {a['ran_on']}")
    cells = _cells(table)
    if not cells:
        return "\n".join(head + ["", "(the paper config has no cells)"])
    cols = [c for c in cells[0] if c != "note" or any(r["note"] for r in cells)]
    num = {"theirs", "ours", "delta"}
    w = {c: max(len(c), *(len(r[c]) for r in cells)) for c in cols}

    def line(vals: dict[str, str]) -> str:
        return (
            "| "
            + " | ".join(vals[c].rjust(w[c]) if c in num else vals[c].ljust(w[c]) for c in cols)
            + " |"
        )

    sep = "|" + "|".join("-" * (w[c] + 1) + ":" if c in num else "-" * (w[c] + 2) for c in cols)
    body = [line({c: c for c in cols}), sep + "|"] + [line(r) for r in cells]
    return "\n".join(head + [""] + body + ["", summary(table)])


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
    cells = _cells(table)
    if cells:
        cols = [c for c in cells[0] if c != "note" or any(r["note"] for r in cells)]
        head = "".join(f"<th>{c}</th>" for c in cols)
        rows = []
        for r in cells:
            cls = {"pass": "pass", "MISS": "miss"}.get(r["verdict"], "notrun")
            tds = "".join(
                f'<td class="{"num" if c in ("theirs", "ours", "delta") else c}">'
                f"{html.escape(r[c])}</td>"
                for c in cols
            )
            rows.append(f'<tr class="{cls}">{tds}</tr>')
        parts.append(
            f'<table class="qexp paper"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    parts.append(f"<p>{html.escape(summary(table))}</p>")
    return "\n".join(parts)
