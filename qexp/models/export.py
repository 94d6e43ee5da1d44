"""ONNX export shared by every family: fp32 modules and their fake-quant twins alike.

TorchScript-based ``torch.onnx.export(dynamo=False)``: it traces any module, including ones
whose fake-quant ops are plain tensor arithmetic or ``torch.fake_quantize_*`` (which it writes
as QuantizeLinear/DequantizeLinear), without the dynamo exporter's graph-capture constraints.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import onnx
import torch

log = logging.getLogger("qexp")

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "images", "output0"


def export_onnx(
    module: torch.nn.Module,
    path: Path | str,
    imgsz: int,
    batch: int = 1,
    *,
    opset: int = OPSET,
    simplify: bool = True,
    dynamic: bool = False,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``module`` (input (batch, 3, imgsz, imgsz)) to ``path``; atomic (tmp + rename).

    ``simplify=False`` keeps the graph as traced (Q/DQ graphs: a simplifier may fold or move
    the Q/DQ pairs TensorRT needs). ``dynamic=True`` makes batch, height and width symbolic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.onnx")
    was_training = module.training
    module.eval()
    x = torch.zeros(batch, 3, imgsz, imgsz)
    axes = (
        {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch"}}
        if dynamic
        else None
    )
    # ultralytics' Detect caches its anchors by input shape: a module that already ran at this
    # shape would be traced with them as constants. ``dynamic`` makes it compute them in the
    # graph (ultralytics' own exporter does the same for dynamic exports).
    cached_anchors = [m for m in module.modules() if isinstance(getattr(m, "dynamic", None), bool)]
    before = [bool(getattr(m, "dynamic")) for m in cached_anchors]  # noqa: B009
    if dynamic:
        for m in cached_anchors:
            setattr(m, "dynamic", True)  # noqa: B010 - an attribute torch's typing does not know
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # the TorchScript exporter's deprecation and tracer noise
            torch.onnx.export(
                module,
                (x,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        model = onnx.load(str(tmp))
        if simplify:
            model = _slim(model)
        for k, v in (metadata or {}).items():
            model.metadata_props.add(key=k, value=str(v))
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        module.train(was_training)
        for m, d in zip(cached_anchors, before, strict=True):
            setattr(m, "dynamic", d)  # noqa: B010
    return path


def _slim(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        import onnxslim
    except ImportError:
        log.warning("onnxslim is not installed; exporting the unsimplified graph")
        return model
    try:
        return onnxslim.slim(model)
    except Exception as e:  # noqa: BLE001 - a simplifier bug must not cost the export
        log.warning("onnxslim failed (%s: %s); keeping the unsimplified graph", type(e).__name__, e)
        return model
