"""`qexp report`: a sweep's comparison table (md/csv/json), or its HTML page with plots.

By default: the latest sweep of the experiment, its FINISHED jobs, one column per axis or
config key that varies among them; FAILED and SKIPPED jobs are counted under the table
(`--failed` shows them, `--all-sweeps` every sweep, `--all` both).
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

from qexp.report import frontier as F
from qexp.report import paper as P
from qexp.report.build import Options, build
from qexp.report.load import from_mlflow, from_records
from qexp.report.render import FORMATS, render
from qexp.report.table import TableError, parse_baseline
from qexp.tracking.mlflow_sink import default_uri

EPILOG = """examples:
  qexp report --experiment ptq_observers                 # the latest sweep, FINISHED jobs
  qexp report --experiment ptq_observers --all           # every sweep, failed tries too
  qexp report --experiment ptq_observers --cols backend --baseline quantizer=fp16
  qexp report --records outputs/sweeps/paper_yolov5s_seeds_smoke --format html --out r.html
  qexp report --experiment ptq_observers --format html --out report.html --log-parent
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qexp report",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("which runs")
    src.add_argument("--experiment", default="default", help="MLflow experiment (sweep name)")
    src.add_argument("--uri", help="tracking URI (default: sqlite:///outputs/mlflow.db)")
    src.add_argument("--records", type=Path, help="read result.json files under DIR instead")
    src.add_argument("--sweep", help="only this sweep (its dir name or id)")
    src.add_argument(
        "--latest", action="store_true", help="only the latest sweep (the default; for scripts)"
    )
    src.add_argument(
        "--all-sweeps",
        action="store_true",
        help="every sweep of the experiment (a row shows the latest job with its key)",
    )
    tab = p.add_argument_group("table")
    tab.add_argument(
        "--failed",
        action="store_true",
        help="FAILED and SKIPPED jobs as rows with the reason (default: counted under the table)",
    )
    tab.add_argument("--all", action="store_true", help="--all-sweeps and --failed")
    tab.add_argument("--metrics", help="comma-separated metric columns")
    tab.add_argument("--axes", "--rows", dest="axes", help="row keys (default: what varies)")
    tab.add_argument("--cols", help="an axis whose choices become column groups (e.g. backend)")
    tab.add_argument(
        "--baseline",
        default="auto",
        help="AXIS=CHOICE row that Δ/speedup are read against (default: quantizer=none, else fp16)",
    )
    tab.add_argument("--no-baseline", action="store_true", help="no Δ/speedup columns")
    tab.add_argument("--no-best", action="store_true", help="do not mark the best values")
    tab.add_argument("--paper", help="compare with conf/paper/NAME.yaml (default: automatic)")
    tab.add_argument("--no-paper", action="store_true", help="no paper comparison")
    tab.add_argument(
        "--papers", action="store_true", help="list the paper configs (run one: qexp paper=NAME)"
    )
    out = p.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS, default="md", help="html: the full page")
    out.add_argument("--out", type=Path, help="write here instead of stdout")
    out.add_argument("--calib-tensor", help="html: calibration histogram of this tensor")
    out.add_argument(
        "--log-parent",
        action="store_true",
        help="log the HTML page and plots to the sweep's MLflow parent run",
    )
    return p


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    if a.papers:
        return _list_papers()
    latest = not (a.all_sweeps or a.all)
    if a.records and not a.records.exists():  # as `qexp ingest` says of a missing dir
        print(f"qexp report: no such directory: {a.records}", file=sys.stderr)
        return 2
    try:
        if a.records:
            df = from_records(a.records, a.sweep, latest)
        else:
            df = from_mlflow(a.uri or default_uri(), a.experiment, a.sweep, latest)
    except ValueError as e:
        print(f"qexp report: {e}", file=sys.stderr)
        return 2
    unreadable = list(df.attrs.get("unreadable") or [])  # each also named in a warning
    left_out = f"left out {len(unreadable)} unreadable record(s)"
    if df.empty:
        where = a.records or f"experiment {a.experiment!r}"
        print(f"no runs found for {where}" + (f"; {left_out}" * bool(unreadable)), file=sys.stderr)
        return 1
    experiment = a.experiment if not a.records else str(df["experiment"].iloc[-1])
    try:
        opts = Options(
            metrics=a.metrics.split(",") if a.metrics else None,
            axes=a.axes.split(",") if a.axes else None,
            cols=a.cols,
            baseline=None if a.no_baseline else _baseline(a.baseline),
            paper=False if a.no_paper else a.paper,
            calib_tensor=a.calib_tensor,
            failed=a.failed or a.all,
        )
        if a.format == "html" or a.log_parent:
            rep = build(df, experiment, opts)
            if unreadable:
                rep.notes.append(html.escape(f"{left_out}: {'; '.join(unreadable)}"))
            text = rep.html()
        else:
            rep = None
            text = _text_report(df, experiment, opts, a.format, not a.no_best)
            if unreadable and a.format == "md":
                text += f"\n- {left_out}: {'; '.join(unreadable)}"
    except (TableError, ValueError) as e:
        print(f"qexp report: {e}", file=sys.stderr)
        return 2
    if unreadable:
        print(f"qexp report: {left_out} (named above); the table is of the others", file=sys.stderr)
    if a.out:  # one file: the HTML page holds its plots (no PNGs beside it)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
        print(f"wrote {a.out}")
    else:
        print(text)
    if a.log_parent and rep is not None:
        from qexp.report.publish import log_report

        sweeps = list(dict.fromkeys(df["sweep_id"].dropna()))
        # each sweep's parent gets the report of that sweep alone
        reps = [(rep, df)] if len(sweeps) < 2 else []
        reps += [(build(df[df["sweep_id"] == s], experiment, opts), df[df["sweep_id"] == s])
                 for s in sweeps if len(sweeps) > 1]  # fmt: skip
        for one, part in reps:
            for msg in log_report(one, part, a.uri or default_uri()):
                print(msg)
    return 0


def _list_papers() -> int:
    for name in P.available():
        paper = P.load_paper(name)
        print(f"{name}: {paper.get('title', '')}\n    needs: {paper.get('needs', '')}")
    print("\nrun one with: qexp paper=NAME   (then: qexp report --experiment paper_NAME)")
    return 0


def _baseline(spec: str) -> dict[str, str] | str | None:
    return "auto" if spec == "auto" else parse_baseline(spec)


def _text_report(df, experiment: str, opts: Options, fmt: str, mark_best: bool) -> str:
    table = opts.table(df)
    text = render(table, fmt, mark_best=mark_best)
    if fmt != "md":
        return text
    try:  # TensorRT engines vs the fp16 one, where the runs have INT8 engines
        front = F.frontier(df, table.attrs.get("rows"))
    except F.NoFrontier as e:
        front, text = None, f"{text}\n\n{e}"
    if front is not None:
        text = F.to_markdown(front) + "\n\n" + text
    paper = opts.paper_for(df, experiment)
    if paper:
        text = P.to_markdown(P.compare(df, paper)) + "\n\n" + text
    return text
