"""The Deployables quantizers hand to backends: the float model's export, and a fake-quant
model's (Q/DQ ONNX, or the fp32 ONNX plus its dynamic ranges, both from one Q/DQ export)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import onnx
from torch import nn

from qexp.contracts import Precision, Route
from qexp.interfaces import Deployable, Detector
from qexp.models.onnx_fold import fold_static_shapes
from qexp.quant.export import ExportError, count_qdq, write_dynamic_range


def float_export(detector: Detector, imgsz: int) -> Callable[..., Path]:
    """The export of the float module: every route that hands the backend an fp32 ONNX."""

    def export(out_dir: Path, batch: int = 1, dynamic: bool = False) -> Path:
        """``dynamic``: batch, height and width symbolic (rect-mode evaluation)."""
        tag = "_dyn" if dynamic else ""
        path = Path(out_dir) / f"{detector.name}_fp32_{imgsz}_b{batch}{tag}.onnx"
        if not path.exists():
            if dynamic:
                cast(Any, detector).export_onnx(detector.module, path, imgsz, batch, dynamic=True)
            else:
                detector.export_onnx(detector.module, path, imgsz, batch)
        return path

    return export


def export_qdq(
    detector: Detector,
    qmodel: nn.Module,
    path: Path,
    imgsz: int,
    batch: int,
    dynamic: bool = False,
    float_by_rule: list | None = None,
) -> Path:
    """The Q/DQ ONNX of a fake-quant model, checked to hold Q/DQ nodes. ``float_by_rule``
    (the layers the TensorRT rules left float) goes into its metadata (``qexp_float_by_rule``,
    JSON), so the graph given to TensorRT says itself which layers have no Q/DQ and why."""
    path.parent.mkdir(parents=True, exist_ok=True)
    params = inspect.signature(detector.export_onnx).parameters
    if "simplify" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        # a simplifier may fold or move the Q/DQ pairs TensorRT needs
        kw: dict[str, Any] = {"dynamic": True} if dynamic else {}
        if float_by_rule:
            kw["metadata"] = {"qexp_float_by_rule": json.dumps(float_by_rule)}
        cast(Any, detector).export_onnx(qmodel, path, imgsz, batch, simplify=False, **kw)
    else:
        detector.export_onnx(qmodel, path, imgsz, batch)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    if count_qdq(model)["QuantizeLinear"] == 0:
        raise ExportError(f"{path}: the exporter dropped every Q/DQ node (needs dynamo=False)")
    if not dynamic:  # constant shape arithmetic, as the slimmed fp32 export has (onnx_fold.py)
        model, n = fold_static_shapes(model)
        if n:
            onnx.save(model, str(path))
    return path


def make_deployable(
    detector: Detector, qmodel: nn.Module, route: str, imgsz: int, tag: str, info: dict, bits=8
) -> Deployable:
    """An INT8 Deployable of the fake-quant ``qmodel`` by ``route`` (qdq or dynamic_range):
    ``export(dir, batch)`` writes the ONNX the route runs, and for dynamic_range
    ``ranges(dir)`` the JSON of ranges that goes with it."""

    # the plan tied quantizers into groups (qdq_rules=trt, placement.QuantPlan.info): the
    # ranges of the dynamic-range JSON are tied by the same groups
    tied = bool(info.get("shared_scales"))

    def files(out_dir: Path, batch: int, dynamic: bool) -> tuple[Path, Path | None]:
        """(ONNX, dynamic-range JSON or None), exported into ``out_dir`` unless already there."""
        out_dir = Path(out_dir)
        dynamic = dynamic and route == Route.qdq  # TensorRT's dynamic-range route stays static
        stem = f"{detector.name}_int8_{tag}_{imgsz}_b{batch}{'_dyn' if dynamic else ''}"
        qdq = out_dir / f"{stem}_qdq.onnx"
        if not qdq.exists():
            export_qdq(detector, qmodel, qdq, imgsz, batch, dynamic, info.get("float_by_rule"))
        if route == Route.qdq:
            return qdq, None
        fp32, js = out_dir / f"{stem}_fp32.onnx", out_dir / f"{stem}_dynamic_range.json"
        if not (fp32.exists() and js.exists()):
            write_dynamic_range(qdq, fp32, js, bits, tied=tied)
        return fp32, js

    def export(out_dir: Path, batch: int = 1, dynamic: bool = False) -> Path:
        """``dynamic`` (route qdq): batch, height and width symbolic (rect-mode evaluation)."""
        return files(out_dir, batch, dynamic)[0]

    def ranges(out_dir: Path) -> Path:
        js = files(out_dir, 1, False)[1]
        assert js is not None
        return js

    return Deployable(
        detector=detector,
        module=qmodel,
        precision=Precision.int8.value,
        route=str(route),
        export=export,
        ranges=ranges if route == Route.dynamic_range else None,
        info=info,
    )
