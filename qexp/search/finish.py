"""What a search leaves: a progress line per trial, then the summary (``search.json``), the
best recipe as ``recipe/<name>.yaml``, the MLflow parent run's tags and the report page."""

from __future__ import annotations

import collections
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml
from omegaconf import OmegaConf

from qexp.config.axes import AXES
from qexp.preflight import CONF_DIR
from qexp.record import read_record
from qexp.report import search_page
from qexp.search import side_by_side
from qexp.search.objective import measured

if TYPE_CHECKING:
    from qexp.search.objective import Score
    from qexp.search.sweeper import Search

log = logging.getLogger("qexp")
TAG = "qexp.search"


def label(params: dict[str, Any]) -> str:
    """``quantizer=ptq observer=percentile observer.percentile=99.99``: a trial's recipe."""
    groups = [k for k in params if "." not in k]
    rest = sorted(k for k in params if "." in k)
    return " ".join(f"{k}={params[k]}" for k in groups + rest)


def _params(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    fixed = {k.removeprefix("fixed:"): v for k, v in t.user_attrs.items() if k.startswith("fixed:")}
    return {**t.params, **fixed}


def _row(t: optuna.trial.FrozenTrial, budget_pt: float) -> dict[str, Any]:
    a = t.user_attrs
    c = a.get("constraint")
    return {
        "number": t.number,
        "state": t.state.name,
        "params": _params(t),
        "label": label(_params(t)),
        "speedup": a.get("speedup") if t.state == optuna.trial.TrialState.COMPLETE else None,
        "loss_pt": a.get("loss_pt"),
        "ci_pt": a.get("ci_pt"),
        "feasible": c is not None and c <= 0,
        "map50_95": a.get("map50_95"),
        "latency_ms": a.get("latency_ms"),
        "job_dir": a.get("job_dir"),
        "why": a.get("why") or ("" if t.state.name == "COMPLETE" else t.state.name),
    }


def _best(rows: list[dict]) -> dict | None:
    ok = [r for r in rows if r["speedup"] is not None and r["feasible"]]
    return max(ok, key=lambda r: (r["speedup"], -r["loss_pt"])) if ok else None


def progress_line(s: Search, number: int, score: Score) -> str:
    """``trial 4/20 quantizer=ptq ...: 1.98x, -0.41 pt [-0.9, +0.1] in budget | best: ...``"""
    study = optuna.load_study(study_name=s.impl.study_name, storage=str(s.impl.storage))
    rows = [_row(t, s.budget_pt) for t in study.trials if t.state.name == "COMPLETE"]
    mine = next((t for t in study.trials if t.number == number), None)
    here = label(_params(mine)) if mine is not None else ""
    if score.speedup is None:
        what = f"{score.status} ({score.why})"
    else:
        ci = f" [{score.ci_pt[0]:+.2f}, {score.ci_pt[1]:+.2f}]" if score.ci_pt else ""
        fits = "in budget" if score.feasible else "over budget"
        what = f"{score.speedup:.2f}x, {-(score.loss_pt or 0):+.2f} pt{ci} {fits}"
        if score.feasible:
            rows.append({"number": number, "speedup": score.speedup, "feasible": True,
                         "loss_pt": score.loss_pt, "label": here})  # fmt: skip
    best = _best(rows)
    tail = (
        f"best: trial {best['number'] + 1} {best['speedup']:.2f}x ({best['label']})"
        if best
        else "best: none within budget yet"
    )
    return f"trial {number + 1}/{s.total} {here}: {what} | {tail}"


def recipe_text(best: dict, study: str, budget_pt: float) -> str:
    """A ``# @package _global_`` recipe: the groups as overrides, the options as keys."""
    params = best["params"]
    groups = {k: v for k, v in params.items() if "." not in k and k in AXES}
    keys: dict[str, Any] = {}
    for k, v in params.items():
        if "." in k:
            node = keys
            *path, leaf = k.split(".")
            for p in path:
                node = node.setdefault(p, {})
            node[leaf] = v
    doc: dict[str, Any] = {
        "defaults": [{f"override /{k}": v} for k, v in groups.items()] + ["_self_"]
    }
    doc.update(keys)
    head = (
        f"# @package _global_\n# Found by qexp's recipe search (study {study}, trial "
        f"{best['number'] + 1}): {best['speedup']:.2f}x the reference at {-best['loss_pt']:+.2f} pt "
        f"mAP50-95 (budget {budget_pt:g} pt).\n"
    )
    return head + yaml.safe_dump(doc, sort_keys=False)


def _recipe_dir(s: Search) -> Path:
    if s.recipe_dir:
        return Path(s.recipe_dir)
    for src in OmegaConf.select(s.config, "hydra.runtime.config_sources") or []:
        main = src.get("provider") == "main" and src.get("schema") == "file"
        if main and Path(src["path"]).resolve() != CONF_DIR.resolve():
            return Path(src["path"])  # the user's --config-dir
    return Path(str(s.config.paths.output_dir)) / "conf"


def finish(s: Search, study: optuna.Study) -> dict[str, Any]:
    """Summary, recipe, page and MLflow tags once the trials ran."""
    assert s.ref is not None
    sweep_dir = Path(str(s.config.hydra.sweep.dir))
    rows = [_row(t, s.budget_pt) for t in study.trials]
    best = _best(rows)
    ref = s.ref
    metric = next((r for r in study.trials if r.user_attrs.get("metric")), None)
    m = metric.user_attrs["metric"] if metric else "latency_ms_p50"
    failures = collections.Counter(r["why"] for r in rows if r["speedup"] is None)
    doc: dict[str, Any] = {
        "study": study.study_name,
        "storage": s.impl.storage,
        "budget_pt": s.budget_pt,
        "strict": s.strict,
        "metric": m,
        "reference": {
            "label": " ".join(s.reference),
            "job_dir": ref.job_dir,
            "map50_95": ref.metrics.get("map50_95"),
            "metric": m,
            "value": ref.metrics.get(m),
        },
        "counts": {
            "total": len(rows),
            "finished": sum(r["speedup"] is not None for r in rows),
            "within_budget": sum(r["speedup"] is not None and r["feasible"] for r in rows),
            "failed": sum(failures.values()),
        },
        "failures": dict(failures),
        "trials": rows,
        "best": best,
    }
    if best:
        again = side_by_side.retime(
            ref, measured(read_record(Path(best["job_dir"]))), int(s.config.backend.threads)
        )
        if again:
            doc["side_by_side"] = again
        d = _recipe_dir(s) / "recipe"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{s.recipe_name}.yaml"
        path.write_text(recipe_text(best, study.study_name, s.budget_pt))
        fixed = [f"{k}={v}" for k, v in s.fixed.items() if k not in ("experiment", "hydra/sweeper")]
        doc["recipe_file"] = str(path)
        doc["reproduce"] = " ".join(
            ["qexp", "--config-dir", str(d.parent), f"recipe={s.recipe_name}", *fixed]
        )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / search_page.SUMMARY).write_text(json.dumps(doc, indent=2, default=str))
    files = search_page.write(sweep_dir, doc)
    _tag_mlflow(s, doc, files)
    for line in summary_lines(doc):
        print(line, flush=True)
    return doc


def summary_lines(doc: dict) -> list[str]:
    c, b = doc["counts"], doc.get("best")
    out = [
        f"search {doc['study']}: {c['total']} trials, {c['finished']} scored, "
        f"{c['within_budget']} within the {doc['budget_pt']:g} pt budget, {c['failed']} failed"
    ]
    out += [f"  failed ({n}): {why}" for why, n in doc["failures"].items()]
    if b:
        ratio = (doc.get("side_by_side") or {}).get("ratio", b["speedup"])  # the re-timed one
        faster = "" if ratio > 1 else " — no INT8 recipe beats the reference here"
        out.append(
            f"best: trial {b['number'] + 1} {b['speedup']:.2f}x the reference "
            f"({doc['reference']['label']}) at "
            f"{-b['loss_pt']:+.2f} pt: {b['label']}{faster}"
        )
        if doc.get("side_by_side"):
            out.append(side_line(doc))
        out.append(f"recipe: {doc['recipe_file']}\nreproduce: {doc['reproduce']}")
    else:
        out.append("best: no trial within budget")
    return out


def side_line(doc: dict) -> str:
    t = doc["side_by_side"]
    return (
        f"side by side at the end ({t['rounds']} interleaved rounds of {t['calls']} calls, "
        f"{t['threads']} thread(s)): reference {t['ref_ms']:.1f} ms, best {t['best_ms']:.1f} ms: "
        f"{t['ratio']:.2f}x"
    )


def _tag_mlflow(s: Search, doc: dict, files: list[Path]) -> None:
    """The study's best as tags of the sweep's MLflow parent run, the page as its artifact."""
    uri = OmegaConf.select(s.config, "tracking.uri")
    if not uri:
        return
    from qexp.tracking.mlflow_sink import TAG_SWEEP, MlflowSink

    try:
        sink = MlflowSink(str(uri))
        exp_id = sink.experiment_id(str(s.config.tracking.experiment))
        sweep_id = str(Path(str(s.config.hydra.sweep.dir)).resolve())
        parent = sink.find_run(exp_id, TAG_SWEEP + ".parent", sweep_id)
        if parent is None:
            log.warning("no MLflow parent run for %s: the search's tags are not logged", sweep_id)
            return
        b, c = doc.get("best"), doc["counts"]
        tags = {
            f"{TAG}.study": doc["study"],
            f"{TAG}.trials": str(c["total"]),
            f"{TAG}.failed": str(c["failed"]),
            f"{TAG}.budget_pt": str(doc["budget_pt"]),
        }
        if b:
            tags |= {
                f"{TAG}.best": b["label"],
                f"{TAG}.best_trial": str(b["number"] + 1),
                f"{TAG}.best_speedup": f"{b['speedup']:.3f}",
                f"{TAG}.best_delta_pt": f"{-b['loss_pt']:+.3f}",
            }
        if doc.get("side_by_side"):
            tags[f"{TAG}.best_speedup_side_by_side"] = f"{doc['side_by_side']['ratio']:.3f}"
        for k, v in tags.items():
            sink.client.set_tag(parent, k, v)
        for f in files:
            sink.client.log_artifact(parent, str(f), artifact_path="search")
    except Exception as e:  # noqa: BLE001 - the search's files are on disk whatever MLflow does
        log.warning("the search's MLflow tags were not logged (%s: %s)", type(e).__name__, e)
