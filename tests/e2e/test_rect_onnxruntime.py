"""Rect-mode evaluation (ultralytics' val() default) on ONNX Runtime: a dynamic-shape export
scores what the torch module scores on the same rectangular batches."""

from __future__ import annotations

import onnx
import pytest

from qexp.record import FINISHED, find_records, read_record

pytestmark = pytest.mark.assets


def test_rect_onnxruntime_equals_torch_rect(qexp):
    qexp(
        "-m",
        "model=yolov8n,yolov5n",
        "backend=onnxruntime,torch",
        "data=tiny",
        "data.rect=true",
        "data.batch=2",
        "model.imgsz=320",
        "backend.warmup=0",
        "backend.iters=1",
        "backend.threads=1",
        "backend.align=false",
        "tracking=none",
    )
    recs = {
        (r.choices["model"], r.choices["backend"]): r
        for r in (read_record(p) for p in find_records(qexp.out / "sweeps"))
    }
    for model in ("yolov8n", "yolov5n"):
        ort, torch_ = recs[(model, "onnxruntime")], recs[(model, "torch")]
        assert ort.status == torch_.status == FINISHED, (ort.error, torch_.error)
        assert ort.info["eval_rect"] is True and torch_.info["eval_rect"] is True
        for metric in ("map50_95", "map50"):
            assert ort.metrics[metric] == pytest.approx(torch_.metrics[metric], abs=5e-4), model
        graph = onnx.load(str(qexp.out.parent / ort.job_dir / ort.artifacts["onnx"]))
        dims = graph.graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param for d in dims[2:]] == ["height", "width"]  # symbolic H, W
