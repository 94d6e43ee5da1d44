"""Log a sweep's report page (and its plots) to the sweep's MLflow parent run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from qexp.tracking.mlflow_sink import TAG_SWEEP, MlflowSink

if TYPE_CHECKING:
    from qexp.report.build import Report

ARTIFACT_DIR = "report"


def log_report(rep: Report, df: pd.DataFrame, uri: str) -> list[str]:
    """Attach report/report.html + PNGs to the parent run of every sweep in ``df``."""
    sweeps = df[["experiment", "sweep_id"]].dropna().drop_duplicates()
    if sweeps.empty:
        return ["no sweep in these runs (single jobs have no parent run); nothing logged"]
    sink = MlflowSink(uri)
    msgs = []
    with tempfile.TemporaryDirectory(prefix="qexp-report-") as tmp:
        rep.write(Path(tmp) / "report.html")
        for experiment, sweep_id in sweeps.itertuples(index=False):
            exp_id = sink.experiment_id(str(experiment))
            parent = sink.find_run(exp_id, TAG_SWEEP + ".parent", str(sweep_id))
            if parent is None:
                msgs.append(f"sweep {sweep_id}: no parent run in {uri}; nothing logged")
                continue
            sink.client.log_artifacts(parent, tmp, artifact_path=ARTIFACT_DIR)
            msgs.append(f"logged {ARTIFACT_DIR}/report.html to parent run {parent}")
    return msgs
