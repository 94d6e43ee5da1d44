"""The INT8 frontier table of a TensorRT sweep's records, as markdown (for docs/results/).

    python scripts/gpu/frontier_table.py OUTDIR_OR_RECORDS [--sweep NAME | --latest]

Reads every result.json under the path (a sweep dir, an output dir with several sweeps, or
records copied home) the way `qexp report` does, and prints the report's frontier table
(qexp.report.frontier): one row per FINISHED TensorRT engine, read against the fp16 engine of
its model: mAP50-95, Δ vs fp16 in points, img/s at batch 32 and its ratio to fp16, batch-1
p50 latency and its ratio, reformat and INT8 layer counts, plus the build time and the Δ to
the engine's torch twin (align_map_delta: the fake-quant model, the float one for TensorRT's
own INT8) where the records have them. Engines that
did not finish are listed under the table with why. Exit status 1 when there is no frontier.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's qexp

from qexp.record import FINISHED, Equivalent  # noqa: E402
from qexp.report import frontier as F  # noqa: E402
from qexp.report.load import from_records  # noqa: E402
from qexp.report.table import comparison_table  # noqa: E402


def not_measured(df) -> list[str]:
    """Engine jobs (TensorRT's) that did not finish; a repeat of a job that did (SKIPPED as equivalent to
    it, FINISHED then or since) is no loss and is left out."""
    done = set(df.loc[df["status"] == FINISHED, "job_dir"])
    out = []
    engines = F.engines_of(df)  # the jobs of the backends that build engines
    for _, r in engines[engines["status"] != FINISHED].iterrows():
        eq = r.get("equivalent_to")
        if isinstance(eq, Equivalent) and (eq.status == FINISHED or eq.job_dir in done):
            continue
        why = str(r.get("reason") or "").strip()
        name = r.get("recipe") if isinstance(r.get("recipe"), str) else r["run_name"]
        out.append(f"- not measured: {name}: {r['status']}" + (f" ({why})" if why else ""))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, help="a sweep dir, an output dir, or copied records")
    p.add_argument("--sweep", help="only this sweep (its dir name)")
    p.add_argument("--latest", action="store_true", help="only the latest sweep under path")
    a = p.parse_args(argv)
    df = from_records(a.path, a.sweep, a.latest)
    if df.empty:
        print(f"no result.json under {a.path}", file=sys.stderr)
        return 1
    rows = comparison_table(df, include_skipped=False).attrs.get("rows")
    try:
        table = F.frontier(df, rows)
    except F.NoFrontier as e:
        print(e, file=sys.stderr)
        return 1
    if table is None:
        print(f"no FINISHED TensorRT INT8 engine under {a.path}", file=sys.stderr)
        return 1
    print("\n".join([F.to_markdown(table, extra=True), *not_measured(df)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
