"""The page of a recipe search (``experiment=int8_search``): read from its ``search.json``.

The search writes one summary (qexp/search/finish.py): the reference row, the budget, each
trial's parameters, state and score (speedup, mAP loss with its paired bootstrap interval,
within budget or not, why it failed). This module draws it: the history (speedup per trial,
the best within budget so far), the Pareto front of speed against loss with the budget line,
and the table, as markdown beside two PNGs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qexp.report import plots
from qexp.report.plots import plt

SUMMARY = "search.json"


def load(sweep_dir: Path) -> dict[str, Any]:
    return json.loads((Path(sweep_dir) / SUMMARY).read_text())


def _finished(doc: dict) -> list[dict]:
    return [t for t in doc["trials"] if t.get("speedup") is not None]


def plot(doc: dict, path: Path) -> Path:
    """History (left) and speed vs loss with the budget line and the Pareto front (right)."""
    budget = float(doc["budget_pt"])
    done = _finished(doc)
    fig, (h, p) = plt.subplots(1, 2, figsize=(12, 4.6))
    ok = [t for t in done if t["feasible"]]
    bad = [t for t in done if not t["feasible"]]
    for ax_pts, color, label in ((ok, "tab:green", "within budget"), (bad, "tab:red", "over")):
        h.scatter([t["number"] + 1 for t in ax_pts], [t["speedup"] for t in ax_pts], c=color,
                  label=label, edgecolor="black", zorder=3)  # fmt: skip
    best, line = 0.0, []
    for t in sorted(done, key=lambda t: t["number"]):
        best = max(best, t["speedup"]) if t["feasible"] else best
        line.append((t["number"] + 1, best or None))
    h.step([n for n, _ in line], [b for _, b in line], where="post", color="0.3",
           label="best within budget so far")  # fmt: skip
    h.axhline(1.0, color="0.6", ls=":", label=f"reference ({doc['reference']['label']})")
    h.set_xlabel("trial")
    h.set_ylabel(f"speed ratio to the reference ({doc['metric']})")
    h.legend(fontsize=8)
    h.set_title("search history")
    x = [t["speedup"] for t in done]
    y = [-t["loss_pt"] for t in done]
    err = [
        [(-t["loss_pt"]) - t["ci_pt"][0] for t in done if t.get("ci_pt")],
        [t["ci_pt"][1] - (-t["loss_pt"]) for t in done if t.get("ci_pt")],
    ]
    with_ci = [t for t in done if t.get("ci_pt")]
    if with_ci:
        p.errorbar([t["speedup"] for t in with_ci], [-t["loss_pt"] for t in with_ci],
                   yerr=err, fmt="none", ecolor="0.6", zorder=2)  # fmt: skip
    p.scatter(x, y, c=["tab:green" if t["feasible"] else "tab:red" for t in done],
              edgecolor="black", zorder=3)  # fmt: skip
    fx, fy = [1.0, *x], [0.0, *y]  # the reference is a point of the front too
    front = plots.pareto_front([-v for v in fx], fy)
    p.plot([fx[i] for i in front], [fy[i] for i in front], "--", color="0.35", label="Pareto front")
    p.axhline(-budget, color="tab:orange", label=f"budget -{budget:g} pt")
    p.scatter([1.0], [0.0], marker="*", s=160, color="gold", edgecolor="black", zorder=4,
              label="reference")  # fmt: skip
    if doc.get("best"):
        b = doc["best"]
        p.annotate(f"best: trial {b['number'] + 1}", (b["speedup"], -b["loss_pt"]),
                   textcoords="offset points", xytext=(6, 6), fontsize=8)  # fmt: skip
    p.set_xlabel(f"speed ratio to the reference ({doc['metric']})")
    p.set_ylabel("mAP50-95 Δ vs the reference (points, 95% paired bootstrap)")
    p.legend(fontsize=8)
    p.set_title("speed vs accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ci(t: dict) -> str:
    c = t.get("ci_pt")
    return f"[{c[0]:+.2f}, {c[1]:+.2f}]" if c else ""


def markdown(doc: dict, image: str | None = None) -> str:
    """The search page: what ran, what won, every trial."""
    ref, budget = doc["reference"], float(doc["budget_pt"])
    counts = doc["counts"]
    lines = [
        f"# Search {doc['study']}",
        "",
        f"- reference: {ref['label']} — mAP50-95 {ref['map50_95']:.4f}, "
        f"{ref['metric']} {ref['value']:.2f} ({ref['job_dir']})",
        f"- budget: mAP50-95 loss ≤ {budget:g} pt"
        + (" at the far end of the paired bootstrap interval" if doc["strict"] else ""),
        f"- trials: {counts['total']} in the study, {counts['finished']} scored, "
        f"{counts['within_budget']} within budget, {counts['failed']} failed",
    ]
    for why, n in doc.get("failures", {}).items():
        lines.append(f"  - {n} failed: {why}")
    b = doc.get("best")
    if b:
        ratio = (doc.get("side_by_side") or {}).get("ratio", b["speedup"])  # the re-timed one
        verdict = "faster" if ratio > 1 else "NOT faster"
        lines += [
            f"- **best within budget: trial {b['number'] + 1}, {b['speedup']:.2f}× the reference "
            f"({verdict}), Δ {-b['loss_pt']:+.2f} pt {_ci(b)}**: `{b['label']}`",
        ]
        if doc.get("side_by_side"):
            t = doc["side_by_side"]
            lines.append(
                f"- timed again side by side at the end ({t['rounds']} interleaved rounds of "
                f"{t['calls']} calls, {t['threads']} thread(s)): reference {t['ref_ms']:.1f} ms, "
                f"best {t['best_ms']:.1f} ms: **{t['ratio']:.2f}×**"
            )
        lines += [
            f"- recipe: `{doc.get('recipe_file', '')}` — reproduce: `{doc.get('reproduce', '')}`",
        ]
    else:
        lines.append("- **no trial finished within budget**")
    if image:
        lines += ["", f"![search]({image})"]
    lines += ["", "| trial | recipe | state | speed × | Δ pt | 95% CI (pt) | in budget |",
              "|---:|---|---|---:|---:|---|---|"]  # fmt: skip
    for t in doc["trials"]:
        sp = f"{t['speedup']:.2f}" if t.get("speedup") is not None else ""
        d = f"{-t['loss_pt']:+.2f}" if t.get("loss_pt") is not None else ""
        inb = ("yes" if t["feasible"] else "no") if t.get("speedup") is not None else t["why"]
        lines.append(
            f"| {t['number'] + 1} | `{t['label']}` | {t['state']} | {sp} | {d} | {_ci(t)} | {inb} |"
        )
    return "\n".join(lines) + "\n"


def write(sweep_dir: Path, doc: dict) -> list[Path]:
    """search.md + search.png in ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    png = plot(doc, sweep_dir / "search.png") if _finished(doc) else None
    md = sweep_dir / "search.md"
    md.write_text(markdown(doc, png.name if png else None))
    return [md] + ([png] if png else [])
