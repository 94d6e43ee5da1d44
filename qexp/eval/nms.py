"""Class-aware NMS with ultralytics' validation defaults, numpy in and out.

Every backend (torch, ONNX Runtime, the TensorRT worker's outputs) hands its raw batch to this
one function, so a mAP difference between backends is never a post-processing difference. It
follows ``ultralytics.utils.nms.non_max_suppression`` step by step, on torch tensors and with
torchvision's NMS kernel, which is what makes qexp's mAP equal ``YOLO(ckpt).val()``; unlike it,
there is no wall-clock limit that would silently drop images on a slow machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision


@dataclass(frozen=True)
class NMSConfig:
    """ultralytics' validator: conf 0.001, IoU 0.7, 300 detections, several labels per box."""

    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    multi_label: bool = True
    agnostic: bool = False
    max_nms: int = 30000  # boxes kept (by score) before NMS
    max_wh: int = 7680  # per-class coordinate offset that makes one NMS call class-aware


VAL = NMSConfig()


def _xywh2xyxy(x: torch.Tensor) -> torch.Tensor:
    xy, wh = x[..., :2], x[..., 2:] / 2
    return torch.cat((xy - wh, xy + wh), -1)


def non_max_suppression(pred: np.ndarray, cfg: NMSConfig = VAL) -> list[np.ndarray]:
    """(B, 4 + nc, N) [cx, cy, w, h, class scores...] -> per image (K, 6) [x1, y1, x2, y2, conf, cls]."""
    if pred.ndim != 3:
        raise ValueError(f"NMS wants a (batch, 4 + classes, boxes) array, got shape {pred.shape}")
    p = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))
    nc = p.shape[1] - 4
    multi_label = cfg.multi_label and nc > 1
    xc = p[:, 4:].amax(1) > cfg.conf
    p = p.transpose(-1, -2)
    out = []
    with torch.inference_mode():
        for xi, x in enumerate(p):
            x = x[xc[xi]]
            if not x.shape[0]:
                out.append(np.zeros((0, 6), np.float32))
                continue
            box, cls = _xywh2xyxy(x[:, :4]), x[:, 4:]
            if multi_label:
                i, j = torch.where(cls > cfg.conf)
                x = torch.cat((box[i], x[i, 4 + j, None], j[:, None].float()), 1)
            else:
                conf, j = cls.max(1, keepdim=True)
                x = torch.cat((box, conf, j.float()), 1)[conf.view(-1) > cfg.conf]
            if not x.shape[0]:
                out.append(np.zeros((0, 6), np.float32))
                continue
            if x.shape[0] > cfg.max_nms:
                x = x[x[:, 4].argsort(descending=True)[: cfg.max_nms]]
            c = x[:, 5:6] * (0 if cfg.agnostic else cfg.max_wh)
            keep = torchvision.ops.nms(x[:, :4] + c, x[:, 4], cfg.iou)[: cfg.max_det]
            out.append(x[keep].numpy())
    return out


def nms_free(pred: np.ndarray, cfg: NMSConfig = VAL) -> list[np.ndarray]:
    """(B, K, 6) [x1, y1, x2, y2, score, cls] of an NMS-free (one-to-one) head, already its
    top K by score -> per image the rows above ``cfg.conf``, at most ``cfg.max_det``: what
    ultralytics' validator does with an end-to-end model's output (no NMS, no IoU)."""
    if pred.ndim != 3 or pred.shape[-1] != 6:
        raise ValueError(
            f"an NMS-free head gives (batch, detections, 6) arrays, got shape {pred.shape}"
        )
    p = np.ascontiguousarray(pred, dtype=np.float32)
    return [x[x[:, 4] > cfg.conf][: cfg.max_det] for x in p]
