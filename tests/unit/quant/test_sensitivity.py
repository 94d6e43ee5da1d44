"""Sensitivity analysis and ignore=sensitivity_topk on the real yolov8n at a tiny image size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qexp.job import Job
from qexp.quant.sensitivity import (
    ignore_patterns,
    output_metrics,
    ranking,
    raw_outputs,
    scores,
    set_quantized,
    units,
)


def _result():
    rows = [
        {"layer": "a", "mode": "single", "map": 0.40, "mse": 1.0, "cosine": 0.99, "sqnr": 30.0},
        {"layer": "b", "mode": "single", "map": 0.30, "mse": 3.0, "cosine": 0.95, "sqnr": 20.0},
        {"layer": "c", "mode": "single", "map": 0.41, "mse": 0.5, "cosine": 0.999, "sqnr": 35.0},
        {"layer": "a", "mode": "all_but_one", "map": 0.31, "mse": 3.9, "cosine": 0.94, "sqnr": 19},
        {"layer": "b", "mode": "all_but_one", "map": 0.36, "mse": 1.5, "cosine": 0.98, "sqnr": 25},
        {"layer": "c", "mode": "all_but_one", "map": 0.30, "mse": 4.0, "cosine": 0.94, "sqnr": 18},
    ]
    ref = {
        "float": {"map": 0.42},
        "quantized": {"map": 0.29, "mse": 4.2, "cosine": 0.93, "sqnr": 17.5},
    }
    return {"layers": ["a", "b", "c"], "reference": ref, "rows": rows, "images": 2}


def test_scores_say_larger_is_more_sensitive_in_both_modes():
    r = _result()
    for metric in ("map", "mse", "cosine", "sqnr"):
        assert ranking(r, "single", metric) == ["b", "a", "c"]
        assert ranking(r, "all_but_one", metric)[0] == "b"
    assert scores(r, "single", "map")["b"] == pytest.approx(0.12)
    assert scores(r, "all_but_one", "map")["b"] == pytest.approx(0.07)
    with pytest.raises(ValueError, match="metric"):
        scores(r, "single", "psnr")


def test_output_metrics():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 84, 300)).astype(np.float32)
    same = output_metrics(ref, ref, 1)
    assert same["mse"] == 0 and same["cosine"] == pytest.approx(1.0) and same["sqnr"] >= 100
    noisy = output_metrics(ref, ref + 0.1 * rng.normal(size=ref.shape), 1)
    assert noisy["mse"] == pytest.approx(0.01, rel=0.1)
    assert noisy["sqnr"] == pytest.approx(20.0, abs=0.5)  # signal var 1, noise var 0.01
    assert 0.99 < noisy["cosine"] < 1.0
    # channels are standardised: boxes in pixels do not outweigh scores in 0..1
    scale = np.array([640.0] * 4 + [1.0] * 80, np.float32)[None, :, None]
    noise = 0.1 * rng.normal(size=ref.shape)
    scaled = output_metrics(ref * scale, (ref + noise) * scale, 1)
    plain = output_metrics(ref, ref + noise, 1)
    assert scaled == pytest.approx(plain, rel=1e-3)


@pytest.fixture
def tiny(tmp_path, compose, assets):
    from qexp.data import load_eval_data
    from qexp.registry import MODEL_FAMILIES

    def make(name: str, *overrides):
        cfg = compose(
            ["quantizer=ptq", "ignore=sensitivity_topk", "data=tiny", "model.imgsz=64",
             "data.calib.num=4", "data.max_images=2", "ignore.images=3", *overrides]
        )  # fmt: skip
        job = Job(cfg=cfg, dir=tmp_path / name, cache_dir=tmp_path / "cache")
        det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
        return cfg, job, det, load_eval_data(cfg.data, job)

    return make


@pytest.mark.assets
def test_sensitivity_topk_ranks_caches_and_keeps_layers_float(tiny):
    from qexp.quant.steps import calibrate, prepare_model, set_ranges

    cfg, job, det, data = tiny("job1", "ignore.k=3", "ignore.metric=mse")
    patterns = ignore_patterns(job, det, data)
    info = job.info["sensitivity_topk"]
    assert patterns == info["layers"] and len(patterns) == 3
    assert info["metric"] == "mse" and info["images"] == 3
    table = pd.read_csv(job.dir / job.artifacts["sensitivity_table"])
    fmodel, qmodel, plan = prepare_model(det.module, [], cfg.quantizer)
    n = len(plan.quantized)
    assert len(table) == 2 * n and set(table["mode"]) == {"single", "all_but_one"}
    assert sorted(table[table["mode"] == "single"]["rank_mse"]) == list(range(1, n + 1))
    assert "Spearman" in (job.dir / job.artifacts["sensitivity_summary"]).read_text()
    assert (job.dir / job.artifacts["sensitivity_plot"]).stat().st_size > 1000

    cfg2, job2, det2, data2 = tiny("job2", "ignore.k=3", "ignore.metric=mse")
    cache_json = next((job.cache_dir / "sensitivity").glob("*/sensitivity.json"))
    mtime = cache_json.stat().st_mtime_ns
    assert ignore_patterns(job2, det2, data2) == patterns
    assert cache_json.stat().st_mtime_ns == mtime  # the ranking came from the cache

    # partial quantization: those layers float, the rest quantized, lowers the output error
    f_part, q_part, plan_part = prepare_model(det.module, patterns, cfg.quantizer)
    assert plan_part.ignored == [n for n in plan.quantized if n in patterns]
    stats, _, _ = calibrate(job, fmodel, data, 64, 4, 2048)
    set_ranges(qmodel, plan, stats, cfg.observer)
    set_ranges(q_part, plan_part, stats, cfg.observer)
    images = [s[0] for s in data.calibration_samples(64, 3)]
    ref = raw_outputs(fmodel, images, det)
    full = output_metrics(ref, raw_outputs(qmodel, images, det))
    part = output_metrics(ref, raw_outputs(q_part, images, det))
    assert part["mse"] < full["mse"]

    u = units(qmodel, plan)
    set_quantized(u, set())
    assert np.allclose(raw_outputs(qmodel, images, det), ref, atol=1e-4)  # all off = float


def test_mode_and_images_are_config_options(tiny, assets):
    # bad values fail when the config is composed or validated (tests/unit/spine/test_config.py)
    cfg, job, *_ = tiny("job", "ignore.mode=all_but_one", "ignore.images=8")
    assert (job.settings.ignore.mode, job.settings.ignore.images) == ("all_but_one", 8)


@pytest.mark.assets
def test_resumed_forward_equals_the_full_forward(tiny):
    import torch

    from qexp.quant import partial_forward

    cfg, job, det, data = tiny("job")
    x = torch.from_numpy(data.calibration(64, 1)[0])
    full, outs = partial_forward.run(det.module, x)
    assert len(outs) == len(det.module.model) and torch.equal(full, det.module(x))
    for start in (1, 5, len(outs) - 1):
        again, _ = partial_forward.run(det.module, x, start, outs)
        assert torch.equal(again, full)
    assert partial_forward.block_of("model.12.cv1.conv", det.module) == 12
    assert partial_forward.block_of("head.conv", det.module) == 0


@pytest.mark.assets
def test_rank_observer_gives_jobs_of_any_observer_one_ranking(tiny):
    # ignore.rank_observer: the layers are ranked with that observer at its defaults, whatever
    # the job's observer, so a search's trials of different observers share one cached ranking
    from qexp.config.validate import ConfigError, validate

    base = ("ignore.k=2", "ignore.metric=mse", "ignore.rank_observer=minmax")
    _, job1, det1, data1 = tiny("pct", "observer=percentile", "observer.percentile=99.9", *base)
    top1 = ignore_patterns(job1, det1, data1)
    _, job2, det2, data2 = tiny("mse", "observer=mse", *base)
    assert ignore_patterns(job2, det2, data2) == top1
    assert job2.info["sensitivity_topk"]["observer"] == "minmax"
    assert job2.info["sensitivity_topk"]["cache"] == job1.info["sensitivity_topk"]["cache"]
    assert len(list((job1.cache_dir / "sensitivity").glob("*/sensitivity.json"))) == 1
    # the same entry as a minmax job's own ranking: unset, the job's observer ranks
    _, job3, det3, data3 = tiny("minmax", "observer=minmax", "ignore.k=2", "ignore.metric=mse")
    assert ignore_patterns(job3, det3, data3) == top1
    assert job3.info["sensitivity_topk"]["cache"] == job1.info["sensitivity_topk"]["cache"]

    cfg, *_ = tiny("bad", "ignore.rank_observer=minmaks")
    with pytest.raises(ConfigError, match=r"ignore.rank_observer='minmaks'"):
        validate(cfg)
