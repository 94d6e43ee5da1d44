"""ONNX fp32 scores what torch fp32 scores; the alignment artifact holds the numbers.

Runs the onnxruntime backend as the runner does (quantizer=none, backend.align=true), so one
pass over the images feeds both the exported ONNX and the torch module. 16 images in CI; all
206 coco_val images for both families are ``slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qexp.job import Job
from qexp.registry import BACKENDS, MODEL_FAMILIES, QUANTIZERS
from tests.conftest import ASSETS, CONF


def run_ort_job(tmp: Path, overrides: list[str]) -> Job:
    from hydra import compose, initialize_config_dir

    from qexp.config_store import register_configs
    from qexp.data import load_eval_data

    if not ASSETS.exists():
        pytest.skip(f"shared assets not found at {ASSETS}")
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            [
                "backend=onnxruntime",
                "backend.align=true",
                "backend.warmup=1",
                "backend.iters=3",
                f"paths.output_dir={tmp}",
                *overrides,
            ],
        )
    job = Job(cfg=cfg, dir=tmp / "job", cache_dir=tmp / "cache")
    detector = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    data = load_eval_data(cfg.data, job)
    deploy = QUANTIZERS.build(job.settings.quantizer).quantize(job, detector, data)
    BACKENDS.build(job.settings.backend).run(job, deploy, data)
    return job


def _check(job: Job, images: int) -> dict:
    m = job.metrics
    doc = json.loads((job.dir / job.artifacts["alignment_onnxruntime"]).read_text())
    print(json.dumps(doc, indent=1))
    assert doc["images"] == images
    assert abs(m["map50_95"] - m["torch/map50_95"]) <= 0.001
    assert abs(m["map50"] - m["torch/map50"]) <= 0.001
    assert doc["map50_95"]["delta"] == pytest.approx(m["map50_95"] - m["torch/map50_95"])
    assert doc["raw_output"]["max_abs_diff"] == m["align_max_abs_diff"] < 0.05
    assert doc["raw_output"]["cosine"] == m["align_cosine"] > 0.999999
    return doc


def test_onnx_fp32_matches_torch_fp32_on_sixteen_images(tmp_path):
    _check(run_ort_job(tmp_path, ["model=yolov8n", "data=tiny"]), 16)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 2 x 206 forwards; on a shared 2-core VM this passed 900 s
@pytest.mark.parametrize("model", ["yolov8n", "yolov5n"])
def test_onnx_fp32_matches_torch_fp32_on_coco_val(tmp_path, model):
    job = run_ort_job(tmp_path, [f"model={model}", "data=coco_val"])
    _check(job, 206)
    if model == "yolov5n":
        # the classic checkpoint through qexp's pipeline lands near its published figure
        # (0.303 mAP50-95 with the classic repo's own val: IoU 0.6 NMS, its own letterbox)
        assert abs(job.metrics["torch/map50_95"] - 0.303) < 0.02
