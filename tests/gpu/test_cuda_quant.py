"""The learning quantizers on CUDA: QAT steps (LSQ scales, distillation) and AdaRound's
reconstruction run on the GPU when one is present (``quantizer.device=auto``, the default of
every quantizer; the calibration pass too), and what they produce exports and runs like the
CPU path.

Skips itself without CUDA; TensorRT is not needed. On the GPU machine:
`pytest -m gpu tests/gpu/test_cuda_quant.py` (staged by scripts/gpu/install_py.sh).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from omegaconf import OmegaConf

from qexp.job import Job
from qexp.quant.adaround import AdaRound
from qexp.quant.export import count_qdq
from qexp.quant.fakequant import ActQuantizer
from qexp.quant.qat import QAT, Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.assets,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


def _setup(tmp_path, compose, *overrides):
    from qexp.data import load_eval_data
    from qexp.registry import MODEL_FAMILIES

    cfg = compose(
        ["data=tiny", "model.imgsz=96", "data.calib.num=4", "data.max_images=2", *overrides]
    )
    job = Job(cfg=cfg, dir=tmp_path / "job", cache_dir=tmp_path / "cache")
    det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    return cfg, job, det, load_eval_data(cfg.data, job)


def test_qat_steps_on_cuda_lower_the_distillation_loss(tmp_path, compose):
    from qexp.quant.steps import calibrate, prepare_model, set_ranges

    cfg, job, det, data = _setup(tmp_path, compose, "quantizer=qat", "observer=minmax")
    fmodel, qmodel, plan = prepare_model(det.module, [], cfg.quantizer)
    stats, _, _ = calibrate(job, fmodel, data, 96, 4, 2048)
    set_ranges(qmodel, plan, stats, cfg.observer)
    for m in qmodel.modules():  # a hard-clipping init, as in the CPU test
        if isinstance(m, ActQuantizer) and m.enabled:
            m.set_amax(m.amax * 0.25)
    dev = torch.device("cuda")
    fmodel.to(dev)
    qmodel.to(dev)
    samples = list(data.calibration_samples(96, 4))
    x = torch.from_numpy(np.concatenate([s[0] for s in samples])).to(dev)
    labels = [s[1] for s in samples]
    qcfg = OmegaConf.merge(cfg.quantizer, {"lr": 1e-4})
    trainer = Trainer(qmodel, fmodel, qcfg, det.num_classes, "ultralytics", dev)
    with torch.no_grad():
        before = trainer.loss(x, labels)[1]["loss"]
    with torch.enable_grad():
        for _ in range(10):
            trainer.step(x, labels)
    with torch.no_grad():
        after = trainer.loss(x, labels)[1]["loss"]
    trainer.finish()
    assert after < 0.85 * before
    assert all(p.device.type == "cuda" for p in qmodel.parameters())


def test_qat_and_adaround_quantizers_train_on_cuda_and_export(tmp_path, compose):
    cfg, job, det, data = _setup(
        tmp_path, compose, "quantizer=qat", "quantizer.epochs=1", "quantizer.batch=2"
    )
    assert cfg.quantizer.device == "auto"
    deploy = QAT(job.settings.quantizer).quantize(job, det, data)
    assert len(deploy.info["qat"]["epochs"]) == 1 and job.metrics["qat_s"] > 0
    assert job.info["quant_device"].startswith("cuda:")  # calibration and training
    assert job.info["calib_device"].startswith("cuda:")
    assert all(p.device.type == "cpu" for p in deploy.module.parameters())  # back for export
    model = onnx.load(str(deploy.export(tmp_path / "qat_onnx")))
    onnx.checker.check_model(model)
    assert count_qdq(model)["QuantizeLinear"] > 50

    cfg, job, det, data = _setup(
        tmp_path / "ada", compose, "quantizer=adaround", "quantizer.w_bits=4",
        "quantizer.iters=30", "quantizer.rows=1024", "quantizer.batch_rows=256",
    )  # fmt: skip
    deploy = AdaRound(job.settings.quantizer).quantize(job, det, data)
    assert job.info["quant_device"].startswith("cuda:")
    s = deploy.info["adaround"]
    assert s["rec_loss_adaround"] < s["rec_loss_nearest"]
    onnx.checker.check_model(onnx.load(str(deploy.export(tmp_path / "ada_onnx"))))
