"""quantizer=qat: fine-tune the fake-quant model from its PTQ initialisation.

Start: PTQ with the job's observer (same prepare -> calibrate -> set ranges as
``quantizer=ptq``). Then train with the straight-through estimator on the calibration split's
labelled images (coco128 by default, disjoint from the eval images): the ultralytics detection
loss, distillation from the float model, or both; optionally learnable scales (LSQ).

BatchNorm: folded into the convolutions before fine-tuning (as for PTQ and as TensorRT
deploys), so QAT trains the folded weights and biases directly; there are no batch statistics
to update or freeze, and the graph trained is the graph exported. The model otherwise runs in
eval mode (the head decodes as at inference); only the quantizers are in training mode, which
switches the learnable scales to their LSQ gradient path.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qexp.config.schema import bounded
from qexp.config.settings import Settings
from qexp.contracts import Choice
from qexp.interfaces import Deployable, Detector, EvalData
from qexp.job import Job, content_hash
from qexp.progress import track as plain_track
from qexp.quant import lsq, model_cache, pipeline, steps
from qexp.quant.bake import int8_container
from qexp.quant.calibrate import weights_hash
from qexp.quant.deployable import make_deployable
from qexp.quant.det_loss import DetectionLoss, head_outputs, logit_distill, raw_distill
from qexp.quant.fakequant import ActQuantizer, WeightQuantizer
from qexp.quant.ignore import head_name
from qexp.quant.pipeline import PTQConfig
from qexp.quant.placement import FLOAT_BLOCKS
from qexp.registry import QUANTIZERS

log = logging.getLogger("qexp")
# distill (float teacher) | det (labels) | det+distill; functional: "det+distill" is no name
Loss = Choice("Loss", [(n, n) for n in ("det", "distill", "det+distill")])  # type: ignore[call-overload]


class BatchNorm(Choice):
    fold = "fold"  # the only mode: BN folded before training (module docstring)


CACHE_VERSION = 2  # 2: folded convs trained, scale lr relative to amax


@dataclass
class QATConfig(PTQConfig):
    name: str = "qat"
    epochs: int = bounded(10, ge=1)
    lr: float = bounded(1e-5, ge=0)  # weights and biases (AdamW)
    # learnable amax (LSQ): Adam's step as a fraction of each PTQ amax
    scale_lr: float = bounded(3e-2, ge=0)
    batch: int = bounded(8, ge=1)
    weight_decay: float = bounded(0.0, ge=0)
    learn_scales: bool = True  # LSQ-style trainable scales; False: scales stay as PTQ set them
    # distill by default: on coco128's 128 images the detection loss overfits
    # (docs/results/qat.md measures the three)
    loss: Loss = Loss["distill"]  # type: ignore[valid-type]
    distill_weight: float = bounded(1.0, ge=0)
    images: int | None = bounded(
        None, ge=1
    )  # training images from data.calib (None: data.calib.num)
    hflip: bool = True  # random horizontal flips (labels flipped alike)
    grad_clip: float = bounded(10.0, ge=0)  # 0: no clipping
    bn: BatchNorm = BatchNorm.fold


def _quantizers_train(model: nn.Module, on: bool) -> None:
    """Eval everywhere, except the quantizers when ``on`` (see the module docstring)."""
    model.eval()
    for m in model.modules():
        if isinstance(m, (ActQuantizer, WeightQuantizer)):
            m.train(on)


def _set_export(model: nn.Module, export: bool) -> bool | None:
    """Set an ultralytics head's ``export`` flag (False: forward also returns the logits)."""
    name = head_name(model)
    head = model.get_submodule(name) if name else None
    if head is None or not hasattr(head, "export"):
        return None
    old = bool(head.export)
    head.export = export  # type: ignore[assignment]  # torch types Module attrs as Tensor | Module
    return old


def _flip(x: torch.Tensor, labels: list[np.ndarray], mask: np.ndarray):
    x = x.clone()
    out = []
    for i, lab in enumerate(labels):
        lab = lab.copy()
        if mask[i]:
            x[i] = x[i].flip(-1)
            lab[:, 1] = 1.0 - lab[:, 1]
        out.append(lab)
    return x, out


class Trainer:
    """The fine-tuning loop (one object so tests can run a few steps and read the losses)."""

    def __init__(self, qmodel, fmodel, cfg, num_classes: int, family: str, device) -> None:
        self.q, self.f, self.cfg, self.nc, self.device = qmodel, fmodel, cfg, num_classes, device
        # ultralytics' fuse() makes its folded convs with requires_grad=False: train them all,
        # except the blocks that are fixed arithmetic (DFL's constant 0..15 conv)
        fixed = tuple(
            f"{n}." for n, m in qmodel.named_modules() if type(m).__name__ in FLOAT_BLOCKS
        )
        for name, p in qmodel.named_parameters():
            p.requires_grad_(not name.startswith(fixed))
        self.use_det = cfg.loss in ("det", "det+distill")
        self.use_kd = cfg.loss in ("distill", "det+distill")
        self.logits = family == "ultralytics" and head_name(qmodel) is not None
        if self.logits:
            _set_export(qmodel, False)
            _set_export(fmodel, False)
        self.det = DetectionLoss(qmodel) if self.use_det else None
        if cfg.learn_scales:
            lsq.make_learnable(qmodel)
        scales = lsq.scale_parameters(qmodel)
        ids = {id(p) for p in scales}
        weights = [p for p in qmodel.parameters() if id(p) not in ids and p.requires_grad]
        groups = [{"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
        for p in scales:  # amax spans 1e-3..1e2 across layers: each moves relative to its size
            lr = cfg.scale_lr * float(p.detach().abs().mean().clamp_min(1e-8))
            groups.append({"params": [p], "lr": lr, "weight_decay": 0.0})
        self.opt = torch.optim.AdamW(groups)
        head = qmodel.get_submodule(head_name(qmodel)) if self.logits else None
        self.reg_max = int(getattr(head, "reg_max", 16))
        self.history: list[dict[str, float]] = []

    def loss(self, x: torch.Tensor, labels: list[np.ndarray]) -> tuple[torch.Tensor, dict]:
        out = self.q(x)
        total = torch.zeros((), device=x.device)
        parts = {}
        if self.det is not None:
            det = self.det(head_outputs(out), labels)
            total, parts["det"] = total + det, float(det.detach())
        if self.use_kd:
            with torch.no_grad():
                t = self.f(x)
            if self.logits:
                kd = logit_distill(head_outputs(out), head_outputs(t), self.reg_max)
            else:
                kd = raw_distill(_raw(out), _raw(t), self.nc)
            total, parts["distill"] = total + self.cfg.distill_weight * kd, float(kd.detach())
        parts["loss"] = float(total.detach())
        return total, parts

    def step(self, x: torch.Tensor, labels: list[np.ndarray]) -> dict:
        _quantizers_train(self.q, True)
        self.f.eval()
        loss, parts = self.loss(x, labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.q.parameters(), self.cfg.grad_clip)
        self.opt.step()
        lsq.freeze(self.q)
        self.history.append(parts)
        return parts

    def finish(self) -> None:
        _quantizers_train(self.q, False)
        if self.logits:
            _set_export(self.q, True)
            _set_export(self.f, True)
        for p in self.q.parameters():
            p.requires_grad_(False)


def _raw(output):
    while isinstance(output, (tuple, list)):
        output = output[0]
    return output


def train(
    trainer: Trainer,
    samples: list[tuple[np.ndarray, np.ndarray]],
    epochs: int,
    batch: int,
    hflip: bool,
    seed: int = 0,
    track: Callable = plain_track,
) -> list[dict]:
    """``epochs`` passes over ``samples`` ((1,3,S,S) image, (n,5) labels). Returns per-epoch
    mean losses."""
    rng = np.random.default_rng(seed)
    per_epoch = math.ceil(len(samples) / batch)
    steps = [(e, i) for e in range(epochs) for i in range(per_epoch)]
    order = None
    epochs_out: list[dict] = []
    acc: list[dict] = []
    for e, i in track(steps, "qat: training", total=len(steps)):
        if i == 0:
            order = rng.permutation(len(samples))
        assert order is not None
        idx = order[i * batch : (i + 1) * batch]
        x = torch.from_numpy(np.concatenate([samples[j][0] for j in idx])).to(trainer.device)
        labels = [samples[j][1] for j in idx]
        if hflip:
            x, labels = _flip(x, labels, rng.random(len(idx)) < 0.5)
        acc.append(trainer.step(x, labels))
        if i == per_epoch - 1:
            mean = {k: float(np.mean([a[k] for a in acc if k in a])) for k in acc[0]}
            epochs_out.append({"epoch": e, **mean})
            log.info(
                "qat: epoch %d/%d %s", e + 1, epochs, {k: round(v, 4) for k, v in mean.items()}
            )
            acc = []
    return epochs_out


@QUANTIZERS.register("qat", schema=QATConfig)
class QAT(pipeline.FakeQuantQuantizer[QATConfig]):
    def check(self, s: Settings) -> str | None:
        q = self.cfg
        if q.loss != "distill" and s.model.family != "ultralytics":
            return (
                f"quantizer.loss={q.loss} uses the ultralytics detection loss; model.family="
                f"{s.model.family} supports quantizer.loss=distill"
            )
        if q.loss != "distill" and not s.data.calib.labels:
            return "quantizer.loss with det needs labelled training images: set data.calib.labels"
        return pipeline.check(q, s)

    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable:
        q, c = self.cfg, self.calibrated(job, detector, data)
        n_img, directory, cached = pipeline.trained(job, "qat", CACHE_VERSION, c)
        qmodel, plan = c.qmodel, c.plan
        t = time.perf_counter()
        if cached is not None:
            state, meta = cached
            if q.learn_scales:
                lsq.make_learnable(qmodel)
            qmodel.load_state_dict(state)
            epochs, steps_ = meta["epochs"], meta.get("steps", [])
            log.info("qat: fine-tuned weights loaded from the cache %s", directory)
        else:
            epochs, steps_ = self._train(job, detector, data, c.fmodel, qmodel, n_img)
            model_cache.save(directory, qmodel.state_dict(), {"epochs": epochs, "steps": steps_})
            job.log_metrics({"qat_s": time.perf_counter() - t})
        write_loss_curve(job, steps_, epochs)
        low = int8_container(qmodel)  # w_bits < 8: exportable as int8 with the same step
        qmodel.eval()
        job.log_metrics(c.timings())
        if epochs:
            job.log_metrics({f"qat_{k}_first": v for k, v in epochs[0].items() if k != "epoch"})
            job.log_metrics({f"qat_{k}_last": v for k, v in epochs[-1].items() if k != "epoch"})
        info = {
            **c.info(job.settings),
            "qat": {
                "images": n_img, "epochs": epochs, "cache": str(directory), "loss": str(q.loss),
                "learn_scales": q.learn_scales, "bn": "folded before training",
            },
            "int8_container_layers": len(low),
        }  # fmt: skip
        tag = content_hash(weights_hash(qmodel), plan.quantized, n=8)
        imgsz = job.settings.model.imgsz
        return make_deployable(detector, qmodel, q.export, imgsz, tag, info, q.a_bits)

    def _train(
        self, job, detector, data, fmodel, qmodel, n_img: int
    ) -> tuple[list[dict], list[dict]]:
        """Fine-tune ``qmodel`` in place (on the GPU when present). Returns the per-epoch mean
        losses and the per-step losses."""
        s, q = job.settings, self.cfg
        samples = list(data.calibration_samples(s.model.imgsz, n_img))
        device = steps.quant_device(job)
        fmodel.to(device)
        qmodel.to(device)
        trainer = Trainer(qmodel, fmodel, q, detector.num_classes, s.model.family, device)
        with torch.enable_grad():
            epochs = train(trainer, samples, q.epochs, q.batch, q.hflip, s.seed, job.track)
        trainer.finish()
        qmodel.cpu()
        fmodel.cpu()
        return epochs, trainer.history


def write_loss_curve(job: Job, steps: list[dict], epochs: list[dict]) -> None:
    """``qat_losses.csv`` (one row per step) and ``qat_losses.png`` (each loss part per step,
    with the epoch means) as job artifacts: the training curve, in MLflow beside the mAP."""
    if not steps:
        return
    parts = [k for k in steps[0] if k != "loss"] + ["loss"]
    csv = job.path("qat_losses.csv")
    rows = [",".join(["step", *parts])]
    rows += [",".join([str(i), *(f"{st.get(k, float('nan')):.6g}" for k in parts)])
             for i, st in enumerate(steps)]  # fmt: skip
    csv.write_text("\n".join(rows) + "\n")
    job.add_artifact("qat_losses", csv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_epoch = max(1, len(steps) // max(1, len(epochs)))
    fig, axes = plt.subplots(1, len(parts), figsize=(4.5 * len(parts), 3.2), squeeze=False)
    for ax, k in zip(axes[0], parts, strict=True):
        ax.plot([st.get(k, float("nan")) for st in steps], lw=0.8, label="step")
        ends = [(e["epoch"] + 1) * per_epoch - 1 for e in epochs]
        ax.plot(ends, [e.get(k, float("nan")) for e in epochs], "o-", label="epoch mean")
        ax.set_title(f"qat {k}")
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    png = job.path("qat_losses.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    job.add_artifact("qat_losses_plot", png)
