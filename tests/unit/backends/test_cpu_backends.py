"""onnxruntime and torch backends on a tiny real job: metrics, artifacts, alignment, ONNX cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qexp.backends.latency import fixed_batch, latency_metrics, measure
from qexp.config.validate import validate
from qexp.job import Job
from qexp.registry import BACKENDS, MODEL_FAMILIES, QUANTIZERS
from qexp.runner import combination_reason

TINY = ["data=tiny", "data.max_images=3", "model.imgsz=320", "backend.warmup=1", "backend.iters=3"]


def _job(cfg, tmp_path: Path, name: str) -> Job:
    return Job(cfg=cfg, dir=tmp_path / name, cache_dir=tmp_path / "cache")


def _float_deploy(cfg, job):
    from qexp.data import load_eval_data

    detector = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    data = load_eval_data(cfg.data, job)
    return QUANTIZERS.build(job.settings.quantizer).quantize(job, detector, data), data


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """The same float job through onnxruntime (twice: the 2nd hits the ONNX cache) and torch."""
    from hydra import compose, initialize_config_dir

    from qexp.config_store import register_configs
    from tests.conftest import ASSETS, CONF

    if not ASSETS.exists():
        pytest.skip("shared assets not found")
    register_configs()
    tmp = tmp_path_factory.mktemp("backends")
    runs = {}
    for name, backend in (("ort", "onnxruntime"), ("ort2", "onnxruntime"), ("torch", "torch")):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", [*TINY, f"backend={backend}", f"paths.output_dir={tmp}"])
        job = _job(cfg, tmp, name)
        deploy, data = _float_deploy(cfg, job)
        BACKENDS.build(job.settings.backend).run(job, deploy, data)
        runs[name] = job
    return runs


def test_onnxruntime_logs_map_latency_and_alignment(tiny_runs):
    m = tiny_runs["ort"].metrics
    assert 0 < m["map50_95"] <= m["map50"] <= 1
    assert 0 < m["latency_ms_p50"] <= m["latency_ms_p90"]
    assert m["throughput_ips_b1"] == pytest.approx(1e3 / m["latency_ms_mean"])
    # fp32 ONNX vs the torch module it came from: float reassociation only
    assert m["align_cosine"] > 0.999999 and m["align_max_abs_diff"] < 0.05
    assert abs(m["align_map_delta"]) <= 0.001
    assert m["torch/map50_95"] == pytest.approx(m["map50_95"] - m["align_map_delta"])


def test_alignment_and_detections_artifacts(tiny_runs):
    job = tiny_runs["ort"]
    doc = json.loads((job.dir / job.artifacts["alignment_onnxruntime"]).read_text())
    assert doc["images"] == 3 and doc["imgsz"] == 320
    assert doc["raw_output"]["max_abs_diff"] == job.metrics["align_max_abs_diff"]
    assert doc["map50_95"]["delta"] == job.metrics["align_map_delta"]
    dets = json.loads((job.dir / job.artifacts["detections_onnxruntime"]).read_text())
    ids = {it["image_id"] for it in dets}
    assert dets and len(ids) <= 3 and {"bbox", "score", "category_id"} <= set(dets[0])


def test_exported_onnx_is_cached_by_content(tiny_runs):
    a, b = (Path(tiny_runs[k].artifacts["onnx"]) for k in ("ort", "ort2"))
    assert a == b and a.is_file() and "cache" in a.parts
    assert tiny_runs["ort"].metrics["map50_95"] == tiny_runs["ort2"].metrics["map50_95"]


def test_torch_backend_scores_the_module_alignment_used(tiny_runs):
    t, o = tiny_runs["torch"].metrics, tiny_runs["ort"].metrics
    assert t["map50_95"] == o["torch/map50_95"] and t["map50"] == o["torch/map50"]
    assert t["latency_ms_p50"] > 0 and "align_cosine" not in t
    assert "detections_torch" in tiny_runs["torch"].artifacts


@pytest.mark.parametrize(
    ("overrides", "backend", "why"),
    [
        (["quantizer=fp16"], "onnxruntime", "no precision fp16: fp16 is not measured on the CPU"),
        (["quantizer=fp16"], "torch", "no precision fp16: fp16 is not measured on the CPU"),
        (["quantizer=trt_builtin", "calibrator=minmax"], "onnxruntime", "no route trt_builtin"),
        (["quantizer=trt_builtin", "calibrator=minmax"], "torch", "no route trt_builtin"),
        (["quantizer=ptq_dr"], "onnxruntime", "no route dynamic_range"),
    ],
)
def test_runner_refuses_what_the_cpu_cannot_run(compose, overrides, backend, why):
    reason = combination_reason(validate(compose([*overrides, f"backend={backend}"])))
    assert reason and why in reason and f"backend={backend}" in reason


def test_cpu_backends_take_float_and_qdq(compose):
    for backend in ("onnxruntime", "torch"):
        for quantizer in ("none", "ptq"):
            s = validate(compose([f"backend={backend}", f"quantizer={quantizer}"]))
            assert combination_reason(s) is None
    assert combination_reason(validate(compose(["backend=torch", "quantizer=ptq_dr"]))) is None


def test_latency_helpers():
    calls = []
    t = measure(lambda: calls.append(1), warmup=2, iters=5)
    assert len(calls) == 7 and t.shape == (5,) and (t >= 0).all()
    m = latency_metrics(np.array([1.0, 2.0, 3.0, 4.0, 10.0]), 4)
    assert m["latency_ms_p50"] == 3.0 and m["latency_ms_mean"] == 4.0
    assert m["latency_ms_p90"] == pytest.approx(7.6) and m["throughput_ips_b4"] == 1000.0
    x = np.arange(3 * 2).reshape(3, 2)
    assert fixed_batch(x, 5).shape == (5, 2) and (fixed_batch(x, 5)[3:] == x[-1]).all()
    assert fixed_batch(x, 2).shape == (2, 2)
