"""quantizer=ptq_modelopt on the tiny net: ModelOpt's calibrators, our Q/DQ export, ORT agreement.
Skipped when ModelOpt is not installed (it is an optional extra)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qexp.job import Job
from qexp.quant.export import count_qdq
from qexp.quant.plugins.modelopt import ModelOptPTQ
from qexp.runner import combination_reason

from .conftest import ImageData, export_and_run
from .test_ptq import IMGSZ, _cfg

pytest.importorskip("modelopt.torch.quantization", reason="ModelOpt not installed")


def _mo_cfg(**over):
    return _cfg(**{"quantizer.name": "ptq_modelopt", "quantizer.impl": "modelopt", **over})


def _job(cfg, directory):
    return Job(cfg=cfg, dir=directory / "job", cache_dir=directory.parent / "cache")


def _quantize(job, detector, data):
    return ModelOptPTQ(job.settings.quantizer).quantize(job, detector, data)


@pytest.mark.parametrize("observer", ["minmax", "entropy"])
def test_modelopt_route(tiny_detector, tmp_path, observer):
    job = _job(_mo_cfg(**{"observer.act": observer}), tmp_path / "a")
    assert combination_reason(job.settings) is None
    data = ImageData()
    deploy = _quantize(job, tiny_detector, data)
    assert deploy.info["impl"] == "modelopt"
    assert deploy.info["observer"]["modelopt_method"] == {"minmax": "max"}.get(observer, observer)
    assert deploy.info["float_by_design"] == ["model.3.dfl.conv"]
    assert "calib_s" in job.metrics
    model, got, want = export_and_run(deploy, tmp_path / "out", data.calibration(IMGSZ, 1)[0])
    assert count_qdq(model)["QuantizeLinear"] >= 2 * 5  # inputs + weights of 5 layers
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_modelopt_check_reasons(tmp_path):
    def reason(**over):
        return combination_reason(_job(_mo_cfg(**over), tmp_path).settings)

    assert "weights with max" in reason(**{"observer.weight": "mse"})
    assert "no calibrator" in reason(**{"observer.act": "histogram"})
    assert "int8 by route qdq" in reason(**{"quantizer.export": "dynamic_range"})


def test_modelopt_calibration_cached(tiny_detector, tmp_path):
    """A second job with the same calibration (e.g. another backend) loads the amaxes."""
    from qexp.quant.plugins.modelopt import amax_state

    cfg = _mo_cfg(**{"observer.act": "entropy"})
    data = ImageData()
    deploys = []
    for i in range(2):
        job = _job(cfg, tmp_path / f"job{i}")
        deploys.append(_quantize(job, tiny_detector, data))
    assert [d.info["calib_cache"] for d in deploys] == ["miss", "hit"]
    assert data.calls == 1  # the calibration images were read once
    first, second = (amax_state(d.module) for d in deploys)
    assert first.keys() == second.keys() and len(first) >= 2 * 5
    assert all(torch.equal(first[k], second[k]) for k in first)
    x = torch.from_numpy(data.calibration(IMGSZ, 1)[0])
    with torch.no_grad():
        assert torch.equal(deploys[0].module(x), deploys[1].module(x))


def test_modelopt_calibration_batched(tiny_detector):
    """Calibration feeds batches (ModelOpt's histograms stay near their bin count); the max
    calibrator gives the same amaxes as one image at a time."""
    import modelopt.torch.quantization as mtq

    from qexp.quant.calibrate import batched
    from qexp.quant.placement import quantizable
    from qexp.quant.plugins.modelopt import amax_state, calibrate_modelopt, modelopt_config
    from qexp.quant.steps import float_twin

    images = ImageData().calibration(IMGSZ, 20)
    assert [b.shape[0] for b in batched(images, 16)] == [16, 4]
    amaxes, calls = [], []
    for batch in (1, 16):
        model = float_twin(tiny_detector.module)
        _, fixed = quantizable(model)
        model = mtq.quantize(model, modelopt_config("max", [], fixed, True))
        n = [0]
        model.register_forward_pre_hook(lambda _m, _a, n=n: n.__setitem__(0, n[0] + 1))
        calibrate_modelopt(model, images, "max", 99.99, batch=batch)
        amaxes.append(amax_state(model))
        calls.append(n[0])
    assert calls == [20, 2]
    assert amaxes[0].keys() == amaxes[1].keys()
    for k in amaxes[0]:  # equal up to the last bits a batched convolution changes
        torch.testing.assert_close(amaxes[0][k], amaxes[1][k], rtol=1e-5, atol=0)
