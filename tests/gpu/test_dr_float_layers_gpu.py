"""The dynamic-range route with layers kept float, on the real TensorRT: the two float-layer
sets TensorRT 8.6 refused in the H100 search of 2026-12-07 ("Could not find any implementation
for node ...Conv + PWN(...)"), as qexp jobs. Each must now finish, its record naming the Conv +
SiLU layers it built float (qexp/backends/trt_stage.py float_islands). Small and fast settings
(imgsz 320, batch 1, optimisation level 0, the tiny data): buildability, not speed.
Skips without TensorRT and a GPU. On the GPU machine: `pytest -m gpu tests/gpu -k float_layers`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qexp.backends import tensorrt as trt_backend

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def trt_ok():
    p = trt_backend.probe(os.environ.get("TRT_PYTHON", ""), os.environ.get("TRT_PYTHONPATH", ""),
                          os.environ.get("TRT_LD_LIBRARY_PATH", ""))  # fmt: skip
    if not p.get("ok"):
        pytest.skip(f"TensorRT not available: {p.get('error')}")
    return p


@pytest.mark.parametrize(
    ("ignored", "float_conv"),
    [
        # k = 6's model.1: model.0 and model.1 with no range at either end
        ("[model.0.conv,model.1.conv]", "/model.1/conv/Conv"),
        # k = 1's model.22.cv3.0.2 float: the SiLU conv before it writes an unranged tensor
        ("[model.22.cv3.0.2]", "/model.22/cv3.0/cv3.0.1/conv/Conv"),
    ],
)
def test_float_layers_in_the_dynamic_range_route_build(trt_ok, tmp_path, ignored, float_conv):
    cmd = [sys.executable, "-m", "qexp.cli", "quantizer=ptq_dr", "model=yolov8n", "data=tiny",
           "model.imgsz=320", "backend=tensorrt", "tracking=none", "backend.opt_level=0",
           "backend.batch_sizes=[1]", "backend.eval_batch=1", "backend.align=false",
           f"ignore.patterns={ignored}", f"paths.output_dir={tmp_path}"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    records = list(tmp_path.glob("runs/**/result.json")) + list(tmp_path.glob("**/result.json"))
    assert records, out.stdout[-3000:] + out.stderr[-3000:]
    r = json.loads(records[0].read_text())
    assert r["status"] == "FINISHED", (r.get("error"), out.stderr[-3000:])
    layers = r["info"]["tensorrt"]["float_layers"]
    print(ignored, len(layers), layers, r["metrics"].get("map50_95"))
    assert float_conv in layers
