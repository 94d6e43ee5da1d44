"""Sweeps of result records written with the real Record class (and logged to real MLflow)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from qexp.record import FINISHED, SKIPPED, Record
from tests.conftest import ROOT

FIXTURES = ROOT.parent / "shared" / "device" / "fixtures"  # recorded TensorRT inspector JSON
AXES_DEFAULT = dict(
    model="yolov8n",
    data="coco_val",
    quantizer="none",
    observer="minmax",
    calibrator="none",
    ignore="none",
    backend="onnxruntime",
)


def write_sweep(
    root: Path, jobs: list[dict], experiment: str = "demo", name: str = "2026-01-01_00-00-00"
) -> Path:
    """One record per job dict (choices, metrics, status, reason, error, artifacts, info,
    overrides, config: extra config sections, e.g. {"model": {"weights": ...}}); ``name``: the
    sweep dir, a timestamp whose date and time also set the jobs' start times."""
    sweep = root / "sweeps" / experiment / name
    day, hour = name.split("_")
    for i, job in enumerate(jobs):
        d = sweep / str(i)
        d.mkdir(parents=True, exist_ok=True)
        choices = {**AXES_DEFAULT, **job.get("choices", {})}
        precision = job.get(
            "precision", {"none": "fp32", "fp16": "fp16"}.get(choices["quantizer"], "int8")
        )
        Record(
            record_id=uuid.uuid4().hex,
            status=job.get("status", FINISHED),
            experiment=experiment,
            config_hash=f"hash{i}",
            choices=choices,
            overrides=job.get("overrides", []),
            config={
                **job.get("config", {}),
                "quantizer": {
                    "name": choices["quantizer"],
                    "precision": precision,
                    **job.get("config", {}).get("quantizer", {}),
                },
                "model": {"imgsz": job.get("imgsz", 640), **job.get("config", {}).get("model", {})},
            },  # fmt: skip
            metrics=job.get("metrics", {}),
            artifacts=job.get("artifacts", {}),
            info={"precision": precision, **job.get("info", {})},
            reason=job.get("reason"),
            equivalent_to=job.get("equivalent_to"),
            error=job.get("error"),
            sweep_id=str(sweep),
            job_name=f"qexp#{i}",
            job_dir=str(d),
            started_at=f"{day}T{hour.replace('-', ':')[:5]}:{i:02d}+00:00",
        ).write(d)
    return sweep


def m(map50_95: float, latency: float, map50: float | None = None) -> dict[str, float]:
    return {
        "map50_95": map50_95,
        "map50": map50 if map50 is not None else map50_95 + 0.15,
        "latency_ms_p50": latency,
        "latency_ms_p90": latency * 1.1,
    }


OBSERVER_SWEEP = [
    {"choices": {"quantizer": "none"}, "metrics": m(0.399, 41.0)},
    {"choices": {"quantizer": "fp16"}, "metrics": m(0.398, 30.0)},
    {"choices": {"quantizer": "ptq", "observer": "minmax"}, "metrics": m(0.371, 22.0)},
    {"choices": {"quantizer": "ptq", "observer": "entropy"}, "metrics": m(0.380, 22.5)},
    {"choices": {"quantizer": "ptq", "observer": "mse"}, "metrics": m(0.389, 22.2)},
    {
        "choices": {"quantizer": "trt_builtin", "calibrator": "minmax"},
        "status": SKIPPED,
        "reason": "quantizer=trt_builtin calibrates inside TensorRT: needs backend=tensorrt",
    },
]


@pytest.fixture
def observer_sweep(tmp_path) -> Path:
    return write_sweep(tmp_path, OBSERVER_SWEEP)
