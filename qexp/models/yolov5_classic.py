"""model.family=yolov5: classic anchor-based YOLOv5 checkpoints (the ``models.yolo`` pickles).

Why an unpickler and not the ``yolov5`` PyPI package: that package pins and pulls a large
dependency set (and once installed, exposes a top-level ``models`` only through sys.path
tricks); the checkpoint needs none of it. The classic blocks (Conv, C3, Bottleneck, SPPF,
Concat, Focus, SPP) live on, with the same attribute names and forward, in
``ultralytics.nn.modules``; the unpickler maps them there. Only ``Model`` (a loop over layers)
and the anchor-based ``Detect`` head are qexp's own, below (about 60 lines), so the maintained
ultralytics package carries the blocks and this file carries the one thing ultralytics dropped.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from qexp import offline
from qexp.models.detector import YoloDetector, cfg_get
from qexp.models.safe_load import TRUST, UnsafeCheckpointError, classic_global
from qexp.models.weights import resolve_weights
from qexp.registry import MODEL_FAMILIES

if TYPE_CHECKING:
    from qexp.job import Job

# classic class name -> ultralytics.nn.modules name (same attributes, same forward)
_BLOCKS = {
    "Conv": "Conv",
    "C3": "C3",
    "Bottleneck": "Bottleneck",
    "SPPF": "SPPF",
    "SPP": "SPP",
    "Concat": "Concat",
    "Focus": "Focus",
    "DWConv": "DWConv",
}


class ClassicModel(nn.Module):
    """The classic ``models.yolo.Model`` forward: layers with ``f`` (from) and ``i`` (index)."""

    model: Any  # nn.Sequential of layers carrying .f / .i
    save: list[int]
    names: Any

    def forward(self, x: Any) -> Any:
        y: list[Any] = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x


class ClassicDetect(nn.Module):
    """Anchor-based head: sigmoid, grid/anchor decode -> (B, anchors*cells, 5 + nc) in pixels.

    No in-place writes (unlike the original's ``inplace=True``), so a traced ONNX and a
    fake-quant twin see plain tensor ops.
    """

    nl: int  # detection levels
    na: int  # anchors per level
    no: int  # outputs per anchor: 5 + nc
    nc: int
    m: Any  # nn.ModuleList of 1x1 output convs
    anchors: torch.Tensor  # (nl, na, 2) in stride units
    stride: torch.Tensor

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        z = []
        for i in range(self.nl):
            x = self.m[i](xs[i])
            bs, _, ny, nx = x.shape
            x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2)
            # on x's device: calibration and training run this head on CUDA too
            yv, xv = torch.meshgrid(
                torch.arange(ny, dtype=x.dtype, device=x.device),
                torch.arange(nx, dtype=x.dtype, device=x.device),
                indexing="ij",
            )
            grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2)
            anchor = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2)
            y = x.sigmoid()
            xy = (y[..., 0:2] * 2 - 0.5 + grid) * self.stride[i]
            wh = (y[..., 2:4] * 2) ** 2 * anchor
            z.append(torch.cat((xy, wh, y[..., 4:]), -1).reshape(bs, -1, self.no))
        return torch.cat(z, 1)


class NotClassicError(pickle.UnpicklingError):
    """The file is a checkpoint of another family."""


class _Unpickler(pickle.Unpickler):
    """Resolve ``models.common`` / ``models.yolo`` to ultralytics blocks and the classes above;
    any other global only from the allowlist of :func:`qexp.models.safe_load.classic_global`
    (a checkpoint is a pickle: an open ``find_class`` would let a crafted file run code)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "models.yolo" and name == "Model":
            return ClassicModel
        if module == "models.yolo" and name == "Detect":
            return ClassicDetect
        if module == "models.common" and name in _BLOCKS:
            import ultralytics.nn.modules as um

            return getattr(um, _BLOCKS[name])
        if module.startswith(("models.", "utils.")):
            raise pickle.UnpicklingError(
                f"classic YOLOv5 class {module}.{name} is not supported by model.family=yolov5 "
                f"(supported: Model, Detect, {', '.join(sorted(_BLOCKS))})"
            )
        if module.startswith("ultralytics."):
            raise NotClassicError(
                f"an ultralytics checkpoint (it names {module}.{name}), not a classic YOLOv5 one: "
                "use model.family=ultralytics"
            )
        return classic_global(module, name)


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` needs: an Unpickler and a load."""

    Unpickler = _Unpickler
    __name__ = "qexp_yolov5_pickle"

    @staticmethod
    def load(f: Any, **kw: Any) -> Any:
        return _Unpickler(f, **kw).load()


def load_module(path: str | Path) -> ClassicModel:
    """The classic checkpoint as a fused float32 eval :class:`ClassicModel`."""
    offline.setup()
    from ultralytics.nn.modules import Conv
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    try:
        # weights_only=False hands the unpickling to _Unpickler, whose allowlist is the guard
        ckpt = torch.load(
            str(path), map_location="cpu", weights_only=False, pickle_module=_PickleModule
        )
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"refusing to load {path}: {e}; {TRUST}") from None
    except NotClassicError as e:
        raise TypeError(f"{path}: {e}") from None
    except pickle.UnpicklingError as e:
        raise RuntimeError(f"{path}: {e}") from None
    except (RuntimeError, EOFError, OSError) as e:  # torch names neither the file nor the cause
        raise RuntimeError(
            f"cannot read {path}: not a complete torch checkpoint (truncated or damaged? "
            f"{type(e).__name__}: {e})"
        ) from None
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else ckpt
    if not isinstance(model, ClassicModel):
        raise TypeError(f"{path}: not a classic YOLOv5 checkpoint (found {type(model).__name__})")
    model = model.float().eval()  # the release stores fp16 weights
    head: Any = model.model[-1]
    if not isinstance(head, ClassicDetect):
        raise TypeError(f"{path}: last layer is {type(head).__name__}, not the anchor-based Detect")
    head.stride = torch.as_tensor(
        head.stride, dtype=torch.float32
    )  # a plain attribute: .float() skips it
    for m in model.modules():
        if isinstance(m, Conv) and hasattr(m, "bn"):
            m.conv = fuse_conv_and_bn(m.conv, m.bn)  # as classic YOLOv5's attempt_load(fuse=True)
            delattr(m, "bn")
            m.forward = m.forward_fuse  # type: ignore[method-assign]
        elif isinstance(m, nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None
    return model


def anchor_layout(raw: np.ndarray) -> np.ndarray:
    """(B, N, 5 + nc) [cx, cy, w, h, obj, cls...] -> (B, 4 + nc, N) with scores = cls * obj.

    Classic YOLOv5's NMS multiplies objectness into the class scores; after that the
    candidate filter and multi-label NMS are the same as ultralytics'.
    """
    raw = np.asarray(raw, dtype=np.float32)
    scores = raw[..., 5:] * raw[..., 4:5]
    return np.concatenate((raw[..., :4], scores), -1).transpose(0, 2, 1)


@MODEL_FAMILIES.register("yolov5")
def yolov5_family(cfg_model: Any, job: Job | None = None) -> YoloDetector:
    """Load a classic anchor-based YOLOv5 checkpoint as a :class:`YoloDetector`."""
    weights = str(cfg_get(cfg_model, "weights"))
    model = load_module(resolve_weights(weights, downloadable=False))
    head: Any = model.model[-1]
    names = getattr(model, "names", None) or [str(i) for i in range(int(head.nc))]
    names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    return YoloDetector(
        name=str(cfg_get(cfg_model, "name") or weights),
        module=model,
        stride=int(head.stride.max()),
        num_classes=int(head.nc),
        names=names,
        weights=weights,
        family="yolov5",
        layout=anchor_layout,
    )
