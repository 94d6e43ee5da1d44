"""A job run with an axis key overridden (``ignore.patterns=[...]`` under ``ignore=none``) is
printed, recorded, logged to MLflow and reported as what ran, never as ``ignore=none``.
Real CLI, real MLflow (sqlite); the job is one the runner SKIPS before loading anything."""

from __future__ import annotations

import csv
import io

from mlflow.tracking import MlflowClient

from qexp.record import SKIPPED, find_records, read_record

PATTERN = "[model.10.m.0.attn.pe.conv]"
SHOWN = f"none+patterns={PATTERN}"


def test_overridden_ignore_is_shown_everywhere(qexp):
    # ptq_dr on onnxruntime is SKIPPED at once (no dynamic-range route there): cheap, and the
    # record, the status line and the MLflow run are written all the same
    p = qexp("quantizer=ptq_dr", "ignore=none", f"ignore.patterns={PATTERN}", "data=tiny")
    line = next(ln for ln in (p.stdout + p.stderr).splitlines() if "SKIPPED model=" in ln)
    assert f"ignore={SHOWN}" in line and "ignore=none " not in line
    (rec,) = [read_record(r) for r in find_records(qexp.out / "runs")]
    assert rec.status == SKIPPED and rec.choices["ignore"] == SHOWN

    uri = f"sqlite:///{qexp.out}/mlflow.db"
    runs = MlflowClient(uri).search_runs(
        [e.experiment_id for e in MlflowClient(uri).search_experiments()]
    )
    (run,) = [r for r in runs if r.data.tags.get("qexp.kind") == "job"]
    assert run.data.params["ignore"] == SHOWN
    assert PATTERN.strip("[]") in run.info.run_name

    rep = qexp(
        "report", "--uri", uri, "--all", "--axes", "model,quantizer,ignore", "--format", "csv"
    )
    (row,) = list(csv.DictReader(io.StringIO(rep.stdout.strip())))
    assert row["ignore"] == SHOWN
