"""`qexp report`: print or write a sweep's comparison table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qexp.report.load import from_mlflow, from_records
from qexp.report.table import comparison_table, render
from qexp.tracking.mlflow_sink import default_uri


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qexp report", description=__doc__)
    p.add_argument("--experiment", default="default", help="MLflow experiment (sweep name)")
    p.add_argument("--uri", help="tracking URI (default: sqlite:///outputs/mlflow.db)")
    p.add_argument("--records", type=Path, help="read result.json files under DIR instead")
    p.add_argument("--sweep", help="only this sweep (its dir name or id); default: all runs")
    p.add_argument("--latest", action="store_true", help="only the latest sweep")
    p.add_argument("--format", choices=("md", "csv", "html", "json"), default="md")
    p.add_argument("--metrics", help="comma-separated metric columns")
    p.add_argument("--axes", help="comma-separated row axes (default: those that vary)")
    p.add_argument("--out", type=Path, help="write here instead of stdout")
    return p


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    if a.records:
        df = from_records(a.records)
    else:
        df = from_mlflow(a.uri or default_uri(), a.experiment, a.sweep, a.latest)
    if df.empty:
        print(f"no runs found for experiment {a.experiment!r}", file=sys.stderr)
        return 1
    table = comparison_table(
        df,
        metrics=a.metrics.split(",") if a.metrics else None,
        axes=a.axes.split(",") if a.axes else None,
    )
    text = render(table, a.format)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
        print(f"wrote {a.out}")
    else:
        print(text)
    return 0
