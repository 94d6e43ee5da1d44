"""A GPU sweep's records ingested on another machine: the report reads each job's artifacts
from where `qexp ingest` put them (the MLflow run's artifacts, or beside the result.json read),
never from the record's job_dir, a path on the GPU machine."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from qexp.record import FINISHED, RUNNING, SKIPPED, Equivalent, find_records, read_record
from qexp.report.build import Options, build
from qexp.report.load import artifact_path, from_mlflow, from_records
from qexp.report.table import comparison_table
from qexp.tracking.ingest import ingest
from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "sweep_tensorrt_4xh100"
EXPERIMENT = "tensorrt_yolov8n"


@pytest.fixture(scope="module")
def copied(tmp_path_factory) -> Path:
    """The records as copied from the GPU machine (inspector JSON unpacked)."""
    dst = tmp_path_factory.mktemp("from-gpu") / "2026-11-26_13-06-46"
    shutil.copytree(FIXTURE, dst)
    for gz in dst.rglob("layers.json.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    return dst


@pytest.fixture(scope="module")
def store(copied, tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    count = ingest([copied], uri=uri)
    assert (count.logged, count.present, count.skipped) == (9, 0, 0)
    assert ingest([copied], uri=uri).present == 9  # idempotent
    return uri


def test_the_records_job_dirs_are_not_on_this_machine(copied):
    recs = [read_record(p) for p in find_records(copied)]
    assert len(recs) == 9 and not any(Path(r.job_dir).exists() for r in recs)


@pytest.mark.parametrize("source", ["mlflow", "records"])
def test_every_engine_keeps_its_inspector_json(copied, store, source):
    df = from_mlflow(store, EXPERIMENT) if source == "mlflow" else from_records(copied)
    done = df[df["status"] == FINISHED]
    assert len(done) == 6
    for _, row in done.iterrows():
        path = artifact_path(row, "layers.json")  # the record's name for it
        assert path is not None, f"no layers.json for {row['run_name']}"
        job = Path(str(row["job_dir"])).name
        want = gzip.decompress((FIXTURE / job / "artifacts" / "layers.json.gz").read_bytes())
        assert path.read_bytes() == want
        assert artifact_path(row, "config.yaml") is not None
        if source == "mlflow":  # read from the run's artifacts, not the copied job dirs
            assert not path.resolve().is_relative_to(copied.resolve())


def test_the_html_report_draws_the_precision_map_of_every_engine(store):
    df = from_mlflow(store, EXPERIMENT)
    rep = build(df, EXPERIMENT, Options())
    names = [p.name for p in rep.plots]
    assert "precision_map.png" in names, rep.notes
    assert not [n for n in rep.notes if "precision" in n]
    assert "Per-layer precision of each engine" in rep.html()


def test_rows_that_differ_in_export_or_observer_stay_distinct(store):
    t = comparison_table(from_mlflow(store, EXPERIMENT), hide_equivalent=False)
    rows = {tuple(r) for r in t[["quantizer", "observer", "calibrator"]].itertuples(index=False)}
    assert {("ptq_dr", "minmax", "minmax"), ("ptq_dr", "entropy", "minmax")} <= rows
    assert ("ptq", "minmax", "minmax") in rows  # the Q/DQ route, FAILED: its own row
    assert {("trt_builtin", "minmax", "minmax"), ("trt_builtin", "minmax", "entropy2")} <= rows
    assert len(t) == 9


def test_equivalence_is_read_from_records_written_before_the_field(store, copied):
    from mlflow.tracking import MlflowClient

    from qexp.tracking.mlflow_sink import TAG_EQUIVALENT

    gpu = "/root/qexp-out/sweeps/tensorrt_yolov8n/2026-11-26_13-06-46"
    want = {"0": Equivalent(f"{gpu}/1", RUNNING), "5": Equivalent(f"{gpu}/4", RUNNING)}

    def twins(df):
        skipped = df[df["status"] == SKIPPED]
        names = skipped["job_dir"].map(lambda p: Path(p).name)
        return dict(zip(names, skipped["equivalent_to"], strict=True))

    assert twins(from_records(copied)) == want  # the records have no field: their reason
    assert twins(from_mlflow(store, EXPERIMENT)) == want  # the tag ingest wrote
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    tagged = [r.info.run_id for r in runs if TAG_EQUIVALENT in r.data.tags]
    assert len(tagged) == 2
    for rid in tagged:
        client.delete_tag(rid, TAG_EQUIVALENT)  # as a run an older qexp logged
    assert twins(from_mlflow(store, EXPERIMENT)) == want  # from the reason tag
