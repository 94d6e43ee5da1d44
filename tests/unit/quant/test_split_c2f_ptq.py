"""quantizer=ptq on the split C2f (model.split_c2f=true, real yolov8n at 320, 2 calibration
images): each half of cv1 is quantized as cv1 was (its input range measured on the same
tensor, its per-channel weight scales cv1's own halves), and the Q/DQ ONNX on ONNX Runtime
gives what the unsplit one gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qexp.job import Job
from qexp.registry import MODEL_FAMILIES, QUANTIZERS
from tests.unit.quant.conftest import ort_run

IMGSZ = 320


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """split -> (deploy, Q/DQ ONNX path, detector, data)."""
    from hydra import compose, initialize_config_dir

    from qexp.config_store import register_configs
    from qexp.data import load_eval_data
    from tests.conftest import CONF

    register_configs()
    root = tmp_path_factory.mktemp("split_ptq")
    out: dict[bool, tuple] = {}

    def get(split: bool):
        if split not in out:
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                cfg = compose("config", overrides=[
                    "quantizer=ptq", "model=yolov8n", "data=tiny", f"model.imgsz={IMGSZ}",
                    "data.calib.num=2", "data.max_images=1", f"model.split_c2f={split}",
                    f"paths.output_dir={root}",
                ])  # fmt: skip
            job = Job(cfg=cfg, dir=root / str(split), cache_dir=root / "cache")
            det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
            data = load_eval_data(cfg.data, job)
            deploy = QUANTIZERS.build(job.settings.quantizer).quantize(job, det, data)
            out[split] = (deploy, Path(deploy.export(job.dir / "onnx")), det, data)
        return out[split]

    return get


C2F = ["model.2", "model.4", "model.6", "model.8", "model.12", "model.15", "model.18", "model.21"]


@pytest.mark.assets
def test_each_half_is_quantized_as_cv1_was(quantized):
    whole = quantized(False)[0].module
    halves = quantized(True)[0].module
    for block in C2F:
        cv1 = whole.get_submodule(f"{block}.cv1.conv")
        a = halves.get_submodule(f"{block}.cv1.a.conv")
        b = halves.get_submodule(f"{block}.cv1.b.conv")
        for half in (a, b):  # the same tensor, the same observer: the same range
            assert float(half.input_quantizer.scale()) == float(cv1.input_quantizer.scale())
        joined = torch.cat([a.weight_quantizer.scale(), b.weight_quantizer.scale()])
        assert torch.equal(joined.reshape(-1), cv1.weight_quantizer.scale().reshape(-1))
        assert torch.equal(torch.cat([a.weight, b.weight]), cv1.weight)


@pytest.mark.assets
def test_the_split_qdq_onnx_runs_like_the_unsplit_one(quantized):
    _, whole, det, data = quantized(False)
    _, halves, _, _ = quantized(True)
    batch = next(iter(data.batches(IMGSZ, 1, det.stride, rect=False)))
    x = np.ascontiguousarray(batch.images)
    want, got = ort_run(whole, x), ort_run(halves, x)
    # the same Q/DQ pairs with the same scales around convolutions whose output channels are
    # computed independently: bit-exact, as the fp32 graphs are
    assert np.array_equal(want, got), float(np.abs(want - got).max())
