"""A published table beside ours: each reference cell, our number, the delta, pass or miss.

A paper config (``conf/paper/NAME.yaml``, schema :class:`qexp.config.schema.PaperConfig`)
holds the sweep and the published cells; its sweep logs into experiment ``paper_<NAME>``.
Where its data differ from the paper's (``compare: delta``: a smoke run on a subset), the
paper's own numbers (``published``) are read as Δs vs a reference row (``delta_row``, the
fp32 one) and set beside our Δs: :func:`compare_deltas`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from qexp.record import FINISHED, RECORD_FILE, Equivalent
from qexp.report.load import artifact_path
from qexp.report.paper_render import MISS, NOT_RUN, PASS, summary, to_html, to_markdown

# a paper table is built here and printed by paper_render; callers read both through here
__all__ = ["DELTA", "MISS", "NOT_RUN", "PASS", "PREFIX", "available", "check", "compare",
           "compare_deltas", "load_paper", "paper_for", "paper_from_job", "summary", "to_html",
           "to_markdown"]  # fmt: skip
DELTA = "delta"  # paper.compare: each row's Δ vs the reference row, ours beside the paper's
PREFIX = "paper_"
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def available() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "paper").glob("*.yaml"))


def load_paper(name: str) -> dict[str, Any]:
    """The ``paper`` node of conf/paper/NAME.yaml, composed (and checked) by Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from qexp.config_store import register_configs

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
    paper = OmegaConf.to_container(cfg.paper, resolve=True, enum_to_str=True)
    assert isinstance(paper, dict)
    out = {str(k): v for k, v in paper.items()}
    check(out)
    return out


def _delta_row(paper: dict[str, Any]) -> dict[str, str]:
    """The row every Δ is read against (the schema's default: the fp32 one)."""
    return _norm(paper.get("delta_row") or {"quantizer": "none"})


def _norm(row: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in row.items()}


def check(paper: dict[str, Any]) -> None:
    """A Δ comparison needs the paper's numbers and, per metric, its reference row's value."""
    if paper.get("compare") != DELTA:
        return
    name, ref = paper.get("name"), _delta_row(paper)
    published = paper.get("published") or []
    if not published:
        raise ValueError(f"paper {name}: compare=delta needs the paper's numbers (published)")
    have = {c.get("metric", "map50_95") for c in published if _norm(c["row"]) == ref}
    want = {c.get("metric", "map50_95") for c in published}
    if want - have:
        raise ValueError(
            f"paper {name}: compare=delta reads each Δ against the {_row_label(ref)} row; "
            f"published has no such cell for {sorted(want - have)}"
        )


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
        _check_axes(df, paper, row)
        ours, note, match = _ours(df, done, row, metric)
        delta = ours - float(theirs)
        verdict = PASS if abs(delta) <= tol + 1e-12 else MISS
        if math.isnan(ours):
            verdict = NOT_RUN
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
        deltas=compare_deltas(df, paper) if paper.get("compare") == DELTA else None,
        published_on=paper.get("published_on", ""),
        delta_row=_row_label(_delta_row(paper)),
    )
    return table


def _check_axes(df: pd.DataFrame, paper: dict[str, Any], row: dict[str, str]) -> None:
    bad = [a for a in row if a not in df and "." not in a]
    if bad:
        raise ValueError(f"paper {paper.get('name')}: cell row {row} names unknown axes {bad}")


def _ours(
    df: pd.DataFrame, done: pd.DataFrame, row: dict[str, str], metric: str
) -> tuple[float, str, pd.DataFrame]:
    """Our number for a cell (the latest finished job with its choices, else the FINISHED job
    a SKIPPED one repeats), a note on where it came from or why there is none, the jobs."""
    match = _matching(done, row)
    if len(match) and metric in match and pd.notna(match[metric].iloc[-1]):
        return float(match[metric].iloc[-1]), "", match
    if not len(match):
        ours, note = _from_equivalent(df, row, metric)
        if not math.isnan(ours):
            return ours, note, match
    return math.nan, _why_not_run(df, row, metric), match


def compare_deltas(df: pd.DataFrame, paper: dict[str, Any]) -> list[dict[str, Any]]:
    """Per published cell: theirs and ours, each as a Δ (mAP points) vs its own reference row
    (``delta_row``), and the gap, our Δ - their Δ. For data that differ from the paper's, where
    the values cannot match but the cost of a quantizer can."""
    ref = _delta_row(paper)
    done = df[df["status"] == "FINISHED"].sort_values("started_at", kind="stable")
    published = paper.get("published") or []
    their_ref = {c.get("metric", "map50_95"): float(c["value"]) for c in published
                 if _norm(c["row"]) == ref}  # fmt: skip
    out = []
    for cell in published:
        row, metric, theirs = dict(cell["row"]), cell.get("metric", "map50_95"), cell["value"]
        _check_axes(df, paper, row)
        ours, note, match = _ours(df, done, row, metric)
        our_ref, ref_note, _ = _ours(df, done, ref, metric)
        is_ref = _norm(row) == ref
        their_d = (float(theirs) - their_ref.get(metric, math.nan)) * 100
        our_d = (ours - our_ref) * 100
        if not is_ref and not math.isnan(ours) and math.isnan(our_ref):
            note = f"no {_row_label(ref)} row to read it against ({ref_note})"
        label = _row_label(row) + (f" (theirs: {cell['label']})" if cell.get("label") else "")
        out.append(
            {
                "row": label,
                "metric": metric,
                "theirs": float(theirs),
                "ours": ours,
                "their_delta": math.nan if is_ref else their_d,
                "our_delta": math.nan if is_ref else our_d,
                "gap": math.nan if is_ref else our_d - their_d,
                "reference": is_ref,
                "note": note,
            }
        )
    return out


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
