"""What `qexp report --experiment NAME` shows without options: the latest sweep's FINISHED
jobs, columns for what varies among them (long config values shortened), FAILED/SKIPPED
counted under the table, latency timed under load flagged (p90/p50). Read from real MLflow
(sqlite) and from the records."""

from __future__ import annotations

import pytest

from qexp.record import FAILED, SKIPPED, find_records, read_record
from qexp.report.cli import main
from qexp.report.columns import LABEL_CHARS
from qexp.report.load import from_records
from qexp.report.render import to_markdown
from qexp.report.table import comparison_table
from qexp.tracking.mlflow_sink import MlflowSink
from tests.conftest import ROOT
from tests.unit.report.conftest import m, write_sweep

WEIGHTS = "/home/someone/projects/detectors/checkpoints/yolov8n-coco-from-ovint8.pt"
ROOT_DIR = "/mnt/datasets/coco/val2017-subset-206-images"
REAL_SWEEP = ROOT / "tests" / "fixtures" / "sweep_cpu_observers"


def _job(q: str, obs: str = "minmax", status: str = "FINISHED", **kw) -> dict:
    job = {"choices": {"quantizer": q, "observer": obs}, "status": status, **kw}
    job.setdefault("config", {"model": {"weights": WEIGHTS}, "data": {"root": ROOT_DIR}})
    return job


# an older sweep: every job failed (a wrong weights path), then a fixed one
OLD = [
    _job("none", status=FAILED, error="FileNotFoundError: /nope/yolov8n.pt\nTraceback ..."),
    _job("ptq", status=FAILED, error="FileNotFoundError: /nope/yolov8n.pt\nTraceback ..."),
]
LATEST = [
    _job("none", metrics=m(0.405, 60.0)),
    _job("ptq", "minmax", metrics=m(0.400, 70.0)),
    _job("ptq", "entropy", metrics=m(0.375, 71.0)),
    _job(
        "none",
        "entropy",
        status=SKIPPED,
        reason="equivalent to the FINISHED job in x: quantizer=none does not use observer",
    ),  # fmt: skip
    _job("trt_builtin", status=SKIPPED, reason="TensorRT not available"),
    _job("ptq", "mse", status=FAILED, error="RuntimeError: out of memory"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Both sweeps of the experiment `demo`, in records and in a sqlite MLflow store."""
    root = tmp_path_factory.mktemp("sweeps")
    write_sweep(root, OLD, name="2026-01-01_09-00-00")
    write_sweep(root, LATEST, name="2026-01-02_09-00-00")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    sink = MlflowSink(uri)
    for p in find_records(root / "sweeps"):
        sink.log(read_record(p), p.parent)
    return root, uri


@pytest.mark.parametrize("source", ["mlflow", "records"])
def test_latest_sweep_finished_rows_failures_in_a_footer(store, source, capsys):
    root, uri = store
    src = (
        ["--uri", uri, "--experiment", "demo"]
        if source == "mlflow"
        else ["--records", str(root / "sweeps")]
    )
    assert main(src) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 3  # header + the latest sweep's 3 FINISHED jobs
    assert "FAILED" not in "\n".join(table) and "SKIPPED" not in "\n".join(table)
    assert "| status" not in table[0]  # every row is FINISHED
    assert "not shown: 1 FAILED, 2 SKIPPED" in out and "--failed" in out
    # the old sweep's failures are not counted: it is not the latest
    assert main([*src, "--all"]) == 0
    everything = capsys.readouterr().out
    assert "| status" in everything and "out of memory" in everything
    assert "TensorRT not available" in everything


def test_config_columns_stay_narrow(store, capsys):
    root, _ = store
    jobs = [
        _job("none", config={"model": {"weights": f"/data/ckpt/run{i}/{name}"}}, metrics=m(v, 60))
        for i, (name, v) in enumerate([("yolov8n.pt", 0.40), ("yolov8n-qat-finetuned.pt", 0.39)])
    ]
    sweep = write_sweep(root / "weights", jobs, name="2026-01-03_09-00-00")
    assert main(["--records", str(sweep)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| "))
    assert "model.weights" in header and header.index("model.weights") < header.index("map50_95")
    # the part of the path that tells the values apart, not the whole path
    assert "/data/ckpt" not in out and "| …/yolov8n-qat-finetuned.pt |" in out
    width = len(next(c for c in header.split("|") if "model.weights" in c)) - 2
    assert width <= LABEL_CHARS


def test_latency_under_load_is_flagged():
    """The real sweep (2 shared cores, load 3-5): p90/p50 from 1.4 to 4.4, flagged."""
    t = comparison_table(from_records(REAL_SWEEP), include_skipped=False)
    assert list(t["p90/p50"].round(2)) == [1.39, 3.95, 4.39, 1.78, 2.95]
    md = to_markdown(t)
    assert md.count("⚠") == 5 + 1  # each row, and the note that says what it means
    assert "latency measured under load" in md
    assert "**80.94**" not in md  # a noisy latency is never marked the best one


def test_quiet_latency_is_not_flagged(tmp_path):
    t = comparison_table(from_records(write_sweep(tmp_path, LATEST)), include_skipped=False)
    assert list(t["p90/p50"]) == pytest.approx([1.1] * 3)
    assert "⚠" not in to_markdown(t)
