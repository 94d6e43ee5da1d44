"""A job is one MLflow run, however many sweeps resume it (a real sqlite store here; a real
`mlflow server` in tests/e2e/test_faults.py): a later sweep that reuses a FINISHED record, or
skips the same job again, files the existing run under itself (a tag, and that sweep's parent
run) instead of logging a second run and uploading its artifacts again. The report still finds
every sweep's jobs."""

from __future__ import annotations

from pathlib import Path

from qexp.tracking.ingest import IngestCount, ingest
from tests.unit.tracking.resume_sweeps import check_one_run_per_job, three_sweeps


def test_ingest_logs_a_job_once_and_files_it_under_every_sweep(tmp_path, caplog):
    sweeps = three_sweeps(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    last = Path(sweeps[-1][0].sweep_id)
    assert ingest([last], uri=uri) == IngestCount(logged=2)
    # resumed: its relative artifact was read from the job dir that measured it
    assert "missing" not in caplog.text
    assert ingest([tmp_path / "sweeps"], uri=uri) == IngestCount(logged=4, present=2)
    assert ingest([tmp_path / "sweeps"], uri=uri) == IngestCount(present=6)
    check_one_run_per_job(uri, sweeps)
