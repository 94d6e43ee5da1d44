"""The calibration plot comes from the job's own artifact: the quantizer writes each layer
input's histogram and every observer's clip; the report reads only that file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qexp.job import Job
from qexp.quant.steps import calibrate, prepare_model, set_ranges
from qexp.record import FINISHED, Record
from qexp.report.build import Options, build
from qexp.report.calibration import tensor_clips
from qexp.report.load import from_records
from tests.unit.quant.conftest import ImageData, TinyYolo, randomize_bn


@pytest.fixture
def calibrated_job(compose, tmp_path):
    cfg = compose(["quantizer=ptq", "observer=mse", "model.imgsz=32", "data.calib.num=3"])
    job = Job(cfg=cfg, dir=tmp_path / "sweep" / "0", cache_dir=tmp_path / "cache")
    fmodel, qmodel, plan = prepare_model(randomize_bn(TinyYolo()), [], cfg.quantizer)
    stats, _, _ = calibrate(job, fmodel, ImageData(), 32, 3, 2048)
    amax = set_ranges(qmodel, plan, stats, cfg.observer)
    Record(
        record_id="r0", status=FINISHED, experiment="e", config_hash="h",
        choices={"quantizer": "ptq", "observer": "mse"}, artifacts=dict(job.artifacts),
        metrics={"map50_95": 0.1}, job_dir=str(job.dir), started_at="2026-01-01T00:00:00+00:00",
    ).write(job.dir)  # fmt: skip
    return job, stats, amax


def test_the_artifact_holds_the_histograms_and_the_clips_the_job_used(calibrated_job):
    job, stats, amax = calibrated_job
    doc = json.loads((job.dir / job.artifacts["calibration"]).read_text())
    assert doc["bits"] == 8 and set(doc["tensors"]) == set(stats)
    for name, t in doc["tensors"].items():
        assert set(t["clips"]) == {"minmax", "percentile", "mse", "entropy", "histogram"}
        assert t["clips"]["minmax"] == pytest.approx(stats[name].amax)
        if name in amax:  # the observer of the job (mse) set exactly this range
            assert t["clips"]["mse"] == pytest.approx(amax[name], rel=1e-9)
        hist = np.zeros(t["bins"])
        hist[: len(t["hist"])] = t["hist"]
        np.testing.assert_array_equal(hist, stats[name].hist)


def test_the_report_draws_it_from_the_artifact_alone(calibrated_job, tmp_path):
    job, stats, _ = calibrated_job
    (name, st), *_ = stats.items()
    (tmp_path / "cache").rename(tmp_path / "gone")  # no calibration cache to look at
    df = from_records(tmp_path / "sweep")
    found = tensor_clips(df.iloc[0], name)
    assert found is not None
    hist, clips, layer = found
    assert layer == name and hist.amax == pytest.approx(st.amax)
    np.testing.assert_allclose(hist.edges, st.edges)
    rep = build(df, "e", Options(calib_tensor=name, paper=False))
    assert "calibration.png" in [p.name for p in rep.plots], rep.notes
    assert tensor_clips(df.iloc[0], "no.such.layer") is None
