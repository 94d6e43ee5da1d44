"""Everything a sweep's report holds: the table, the paper comparison, the plots, the page."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from qexp.cache import file_hash
from qexp.record import RECORD_FILE
from qexp.report import columns as C
from qexp.report import frontier as F
from qexp.report import paper as P
from qexp.report import plots
from qexp.report.html import Page, Plot, render_page
from qexp.report.load import artifact_path
from qexp.report.render import to_html, to_markdown
from qexp.report.table import comparison_table, varying_axes, with_knobs

log = logging.getLogger("qexp")

# Artifact names the plots look for in a job (record artifact name, else a file in the job dir).
LAYERS_ARTIFACTS = ("layers", "layers.json")
# sensitivity_table: the CSV qexp.quant.sensitivity_report writes for ignore=sensitivity_topk
SENSITIVITY_ARTIFACTS = ("sensitivity_table", "sensitivity", "sensitivity.json")


@dataclass
class Options:
    metrics: list[str] | None = None
    axes: list[str] | None = None
    cols: str | None = None
    baseline: dict[str, str] | str | None = "auto"
    paper: str | bool | None = None  # a conf/paper name; None: the jobs' own; False: none
    calib_tensor: str | None = None
    failed: bool = True  # FAILED/SKIPPED rows in the table (False: counted in a note)
    x: str = "latency_ms_p50"
    y: str = "map50_95"

    def table(self, df: pd.DataFrame) -> pd.DataFrame:
        """The comparison table of ``df`` these options ask for."""
        return comparison_table(
            df,
            metrics=self.metrics,
            axes=self.axes,
            cols=self.cols,
            baseline=self.baseline,
            include_skipped=self.failed,
        )

    def paper_for(self, df: pd.DataFrame, experiment: str) -> dict | None:
        """The paper to compare with: the one named, else the jobs' own; None when off."""
        if self.paper is False:
            return None
        name = self.paper if isinstance(self.paper, str) and self.paper else None
        return P.paper_for(df, experiment, name)


@dataclass
class Report:
    title: str
    table: pd.DataFrame
    paper: pd.DataFrame | None = None
    frontier: pd.DataFrame | None = None  # TensorRT engines vs the fp16 one (frontier.py)
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # plots that could not be drawn, and why
    meta: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def html(self) -> str:
        sections = []
        if self.paper is not None:
            sections.append(("", P.to_html(self.paper)))
        if self.frontier is not None:
            sections.append((F.TITLE, F.to_html(self.frontier)))
        sections.append(("Comparison table", to_html(self.table)))
        if self.notes:
            items = "".join(f"<li>{n}</li>" for n in self.notes)
            sections.append(("Notes", f"<ul>{items}</ul>"))
        page = Page(self.title, self.meta, self.counts, sections, self.plots)
        return render_page(page)

    def markdown(self, plots_dir: str | None = None) -> str:
        """The paper comparison, the frontier and the table as markdown; ``plots_dir``: where
        the page's PNGs are, relative to the markdown file (the frontier plot is linked)."""
        parts = [P.to_markdown(self.paper)] if self.paper is not None else []
        if self.frontier is not None:
            png = next((p.name for p in self.plots if p.name == F.PNG), None)
            image = f"{plots_dir}/{png}" if plots_dir and png else None
            parts.append(F.to_markdown(self.frontier, image=image))
        return "\n\n".join([*parts, to_markdown(self.table)])

    def write(self, out: Path) -> list[Path]:
        """The page at ``out`` (self-contained) and each plot as a PNG beside it."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.html())
        written = [out]
        for p in self.plots:
            png = out.parent / p.name
            png.write_bytes(p.png)
            written.append(png)
        return written


def build(df: pd.DataFrame, experiment: str = "", opts: Options | None = None) -> Report:
    opts = opts or Options()
    table = opts.table(df)
    sweeps = sorted({Path(s).name for s in df.get("sweep_id", pd.Series()).dropna()})
    rep = Report(
        title=f"qexp report — {experiment or 'records'}",
        table=table,
        meta={"experiment": experiment or "-", "sweep": ", ".join(sweeps) or "-"},
        counts={s: int(n) for s, n in df["status"].value_counts().items()},
    )
    try:
        paper = opts.paper_for(df, experiment)
    except ValueError as e:
        rep.notes.append(str(e))
        paper = None
    if paper:
        rep.paper = P.compare(df, paper)
    rows = table.attrs.get("rows") or varying_axes(df)
    try:
        rep.frontier = F.frontier(df, rows)
    except F.NoFrontier as e:  # INT8 engines but no fp16 engine: say so in one line
        rep.notes.append(str(e))
    except Exception as e:  # noqa: BLE001 - as a plot: never lose the table for it
        log.warning("report: INT8 frontier not drawn: %s", e)
        rep.notes.append(f"INT8 frontier not drawn: {e}")
    if rep.frontier is not None:
        _try(rep, _frontier, rep.frontier)
    # the row keys may be swept config values (quantizer.qdq_rules=none,trt): as columns, so
    # rows that differ only there stay two points (two engines) with two labels
    df = with_knobs(df, rows)
    for draw in (_pareto, _precision, _sensitivity):
        _try(rep, draw, df, rows, opts)
    if opts.calib_tensor:
        _try(rep, _calibration, df, rows, opts)
    return rep


def _try(rep: Report, draw, *args) -> None:
    try:
        rep.plots += draw(*args)
    except Exception as e:  # noqa: BLE001 - a plot that cannot be drawn must not lose the table
        log.warning("report: %s plot not drawn: %s", draw.__name__.strip("_"), e)
        rep.notes.append(f"{draw.__name__.strip('_')} plot not drawn: {e}")


def _frontier(frontier: pd.DataFrame) -> list[Plot]:
    return [
        Plot(
            F.TITLE,
            plots.png_bytes(F.plot(frontier)),
            "Each point is a TensorRT engine: its mAP50-95 Δ vs the fp16 engine (star) against "
            "its batch-32 throughput over the fp16 engine's; the dashed line joins the "
            f"Pareto-optimal ones; the green box is the target (≥ {F.TARGET_RATIO}× at "
            f"≤ {-F.TARGET_DELTA_PT} pt loss).",
            name=F.PNG,
        )
    ]


def _pareto(df: pd.DataFrame, rows: list[str], opts: Options) -> list[Plot]:
    if opts.x not in df or opts.y not in df:
        return []
    done = df[(df["status"] == "FINISHED") & df[opts.x].notna() & df[opts.y].notna()]
    # one point per row of the table: a resumed job is the same record in another sweep
    done = done.sort_values("started_at", kind="stable").drop_duplicates("record_id", keep="last")
    done = done.drop_duplicates([r for r in rows if r in done], keep="last")
    if done.empty:
        return []
    color = next((a for a in ("quantizer", "backend", "model") if a in rows), None)
    p90 = opts.x.replace("_p50", "_p90") if opts.x.endswith("_p50") else None
    p90 = p90 if p90 in done else None
    fig = plots.pareto(done, opts.x, opts.y, label_by=rows, color_by=color, x_p90=p90)
    caption = (
        "Each point is a finished job; the dashed line joins the Pareto-optimal ones "
        "(no other job is both faster and more accurate)."
    )
    if p90:
        spread = pd.to_numeric(done[p90], errors="coerce") / done[opts.x]
        caption += f" Whiskers reach each job's {p90}."
        if (spread >= C.NOISY_SPREAD).any():
            caption += " " + C.noisy_note(int((spread >= C.NOISY_SPREAD).sum()))
    return [Plot(f"{opts.y} vs {opts.x}", plots.png_bytes(fig), caption, name="pareto.png")]


def _precision(df: pd.DataFrame, rows: list[str], opts: Options) -> list[Plot]:
    from qexp.report.precision_map import engine_layers, precision_map

    engines = {}
    for _, row in df[df["status"] == "FINISHED"].iterrows():
        path = next((p for a in LAYERS_ARTIFACTS if (p := artifact_path(row, a))), None)
        if path is not None:
            label = plots.point_label(row, [a for a in rows if a in row])
            engines[label or str(row["run_name"])] = engine_layers(path)
    if not engines:
        return []
    fig = precision_map(engines)
    return [
        Plot(
            "Per-layer precision of each engine",
            plots.png_bytes(fig),
            "From each engine's inspector JSON (layers.json artifact): one cell per layer in "
            "execution order, coloured by the precision TensorRT chose; reformat layers in red.",
            name="precision_map.png",
        )
    ]


def load_sensitivity(path: Path, metric: str = "mse", mode: str = "") -> tuple[dict, str]:
    """{layer: score} and the metric it ranks by, from the sensitivity CSV of
    ``ignore=sensitivity_topk`` jobs (columns layer, mode, sens_<metric>) or a JSON file:
    {"metric", "scores": {layer: score}}, {layer: score}, or a list of {"layer", "score"}."""
    path = Path(path)
    if path.suffix == ".csv":
        t = pd.read_csv(path)
        col = f"sens_{metric}"
        if col not in t or "layer" not in t:
            raise ValueError(f"{path}: no 'layer' and {col!r} columns (has {list(t.columns)})")
        if "mode" in t:
            t = t[t["mode"] == (mode or t["mode"].iloc[0])]
        return dict(zip(t["layer"].astype(str), t[col].astype(float), strict=True)), metric
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "scores" in data:
        metric, data = str(data.get("metric", "")), data["scores"]
    if isinstance(data, list):
        data = {d.get("layer") or d.get("name"): d.get("score", d.get("value")) for d in data}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: unrecognised sensitivity format")
    return {str(k): float(v) for k, v in data.items() if v is not None}, metric


def _topk_settings(row: pd.Series) -> dict:
    """The job's info.sensitivity_topk (metric, mode, k), read from its record when present."""
    path = artifact_path(row, RECORD_FILE)
    try:
        rec = json.loads(path.read_text()) if path else {}
        return dict((rec.get("info") or {}).get("sensitivity_topk") or {})
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _sensitivity(df: pd.DataFrame, rows: list[str], opts: Options) -> list[Plot]:
    out: list[Plot] = []
    seen: set[str] = set()
    for _, row in df[df["status"] == "FINISHED"].iterrows():
        path = next((p for a in SENSITIVITY_ARTIFACTS if (p := artifact_path(row, a))), None)
        if path is None:
            continue
        digest = file_hash(path)
        if digest in seen:  # the jobs of a top-k sweep share one analysis
            continue
        seen.add(digest)
        topk = _topk_settings(row)
        scores, metric = load_sensitivity(
            path, str(topk.get("metric", "mse")), str(topk.get("mode", ""))
        )
        label = plots.point_label(row, [a for a in rows if a in row]) or str(row["run_name"])
        mode = f", mode {topk['mode']}" if topk.get("mode") else ""
        out.append(
            Plot(
                f"Sensitivity ranking — {label}",
                plots.png_bytes(plots.sensitivity(scores, f"{metric}{mode}")),
                "How much each layer's quantization hurts (single: that layer alone quantized; "
                "all_but_one: what keeping it float recovers); the top ones are what "
                "ignore=sensitivity_topk keeps in float.",
                name=f"sensitivity_{len(out)}.png",
            )
        )
    return out


def _calibration(df: pd.DataFrame, rows: list[str], opts: Options) -> list[Plot]:
    from qexp.report.calibration import tensor_clips

    tensor = str(opts.calib_tensor)
    for _, row in df[df["status"] == "FINISHED"].iterrows():
        found = tensor_clips(row, tensor)
        if found is None:
            continue
        st, clips, name = found
        fig = plots.calibration_histogram(st.hist, st.edges, clips, tensor=name, amax=st.amax)
        return [
            Plot(
                f"Calibration histogram — {name}",
                plots.png_bytes(fig),
                "One calibration pass feeds every observer; each vertical line is the clip "
                "(amax) that observer picks for this tensor at 8 bits.",
                name="calibration.png",
            )
        ]
    raise ValueError(f"no job of this sweep has calibration statistics for tensor {tensor!r}")
