"""Records on disk and the same records in (real, sqlite) MLflow give the same table."""

from __future__ import annotations

import pandas as pd
import pytest

from qexp.record import find_records, read_record
from qexp.report.load import from_mlflow, from_records, metric_columns
from qexp.report.table import comparison_table
from qexp.tracking.mlflow_sink import MlflowSink
from tests.unit.report.conftest import OBSERVER_SWEEP, write_sweep


@pytest.fixture(scope="module")
def observer_sweep(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("records"), OBSERVER_SWEEP)


@pytest.fixture(scope="module")
def logged(observer_sweep, tmp_path_factory):
    # one sqlite store for the module: creating one costs seconds (schema migrations)
    d = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    sink = MlflowSink(uri)
    # artifacts next to the store, not in ./mlruns of whatever directory pytest runs in
    sink.client.create_experiment("demo", artifact_location=(d / "artifacts").as_uri())
    for p in find_records(observer_sweep):
        sink.log(read_record(p), p.parent)
    return uri


def test_mlflow_and_records_agree(observer_sweep, logged):
    a = comparison_table(from_records(observer_sweep))
    b = comparison_table(from_mlflow(logged, "demo"))
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert a.attrs["baseline"] == b.attrs["baseline"]


def test_loaded_columns(observer_sweep, logged):
    for df in (from_records(observer_sweep), from_mlflow(logged, "demo")):
        assert {"map50_95", "latency_ms_p50"} <= set(metric_columns(df))
        assert set(df["precision"]) == {"fp32", "fp16", "int8"}
        assert df["run_name"].str.contains("ptq").any()


def test_sweep_selection(observer_sweep, logged):
    name = observer_sweep.name
    assert len(from_mlflow(logged, "demo", sweep=name)) == 6
    assert len(from_mlflow(logged, "demo", sweep="other")) == 0
    assert len(from_records(observer_sweep.parent, latest_sweep=True)) == 6


def test_unknown_experiment_lists_the_known(logged):
    with pytest.raises(ValueError, match=r"no MLflow experiment 'nope'.*demo"):
        from_mlflow(logged, "nope")
