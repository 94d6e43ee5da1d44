"""Losses for QAT: the ultralytics detection loss on labelled images, and distillation from
the float model's outputs (label-free, any family)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from qexp.quant.ignore import head_name


class LossError(ValueError):
    """A loss that cannot be computed for this model."""


def ultralytics_head(model: nn.Module) -> nn.Module:
    """The ultralytics ``Detect`` head of ``model`` (the detection loss needs its anchors)."""
    name = head_name(model)
    head = model.get_submodule(name) if name else None
    if head is None or type(head).__name__ != "Detect" or not hasattr(head, "reg_max"):
        raise LossError(
            "quantizer.loss=det needs an ultralytics Detect head (model.family=ultralytics); "
            "use quantizer.loss=distill for other families"
        )
    return head


def head_outputs(output: Any) -> dict[str, torch.Tensor]:
    """The per-anchor logits dict (boxes, scores, feats) from an ultralytics forward output:
    the model runs in eval mode with ``head.export=False``, returning ``(decoded, dict)``."""
    if isinstance(output, dict):
        return output
    if isinstance(output, (tuple, list)) and len(output) > 1 and isinstance(output[1], dict):
        return output[1]
    raise LossError("the model did not return the head's logits (is head.export still True?)")


class DetectionLoss:
    """ultralytics' ``v8DetectionLoss`` (box IoU + class BCE + DFL, task-aligned assigner)
    with its default gains (box 7.5, cls 0.5, dfl 1.5), averaged over the batch."""

    def __init__(self, model: nn.Module) -> None:
        from ultralytics.cfg import get_cfg
        from ultralytics.utils.loss import v8DetectionLoss

        ultralytics_head(model)
        args = getattr(model, "args", None)
        if not hasattr(args, "box"):  # checkpoints carry a plain dict; the loss wants the hyps
            model.args = get_cfg()  # type: ignore[assignment]  # torch types Module attrs as Tensor | Module
        self.loss = v8DetectionLoss(model)

    def __call__(self, preds: dict[str, torch.Tensor], labels: list[np.ndarray]) -> torch.Tensor:
        batch = labels_to_batch(labels, preds["scores"].device)
        loss, _ = self.loss(preds, batch)
        return loss.sum() / len(labels)


def labels_to_batch(
    labels: list[np.ndarray], device: torch.device | str
) -> dict[str, torch.Tensor]:
    """Per-image (n, 5) [cls, cx, cy, w, h] (normalised) -> ultralytics' batch dict."""
    idx, cls, boxes = [], [], []
    for i, lab in enumerate(labels):
        lab = np.asarray(lab, np.float32).reshape(-1, 5)
        idx.append(np.full(len(lab), i, np.float32))
        cls.append(lab[:, :1])
        boxes.append(lab[:, 1:])
    return {
        "batch_idx": torch.from_numpy(np.concatenate(idx)).to(device),
        "cls": torch.from_numpy(np.concatenate(cls)).to(device),
        "bboxes": torch.from_numpy(np.concatenate(boxes)).to(device),
    }


def logit_distill(
    s: dict[str, torch.Tensor], t: dict[str, torch.Tensor], reg_max: int
) -> torch.Tensor:
    """Distillation on the head's logits, zero when student and teacher agree: the KL
    divergence of each class's Bernoulli (BCE against the teacher's probabilities minus the
    teacher's own entropy) and of the box sides' DFL distributions, summed per anchor."""
    bce = nn.functional.binary_cross_entropy_with_logits
    p = t["scores"].sigmoid()
    cls = (bce(s["scores"], p, reduction="none") - bce(t["scores"], p, reduction="none")).sum(1)
    b, c, a = s["boxes"].shape
    sl = s["boxes"].view(b, 4, reg_max, a).log_softmax(2)
    tl = t["boxes"].view(b, 4, reg_max, a).log_softmax(2)
    box = (tl.exp() * (tl - sl)).sum(2).sum(1)
    return (cls + box).mean()


def raw_distill(s: torch.Tensor, t: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Distillation on any family's raw output: squared error per output channel, each divided
    by the teacher's variance of that channel, so box coordinates (pixels) and class
    probabilities weigh alike."""
    ch = next(
        (d for d in range(1, s.dim()) if s.shape[d] in (4 + num_classes, 5 + num_classes)), -1
    )
    dims = [d for d in range(s.dim()) if d != ch % s.dim()]
    var = t.var(dim=dims, keepdim=True).clamp_min(1e-6)
    return ((s - t) ** 2 / var).mean()
