"""The deploy form of a Q/DQ ONNX for ONNX Runtime's x86 integer kernels (int8_form=qlinear).

qexp's Q/DQ export serves TensorRT, which fuses Q/DQ wherever it finds them: it quantizes
each quantized layer's *input* (S8, symmetric) and its weight. ONNX Runtime's CPU provider
runs a convolution on integers (QLinearConv) only when its output is quantized too
(``DQ(x), DQ(w) -> Conv -> Q``), and the elementwise ops between convolutions (SiLU's Sigmoid
and Mul, Add, Concat, MaxPool, Resize) on integers only with Q/DQ around each of them; with
S8 activations its x86 fusions leave most convolutions in float. On the export as it is,
ORT therefore runs every convolution in fp32 with the Q/DQ arithmetic on top: slower than fp32
(docs/results/search.md measures both). This form:

  1. takes the export's float graph (each Q/DQ pair removed, each weight replaced by its
     fake-quantized value, so AdaRound / observer choices on the weights are kept),
  2. quantizes it with ONNX Runtime's own QDQ quantizer, U8 activations and per-channel S8
     weights, **with qexp's scales on every tensor qexp quantized** (an S8 scale s with zero
     point 0 is the same grid as U8 with s and 128), the layers qexp kept in float excluded,
     the decode tail (DFL, box arithmetic: everything downstream of the last quantized layers)
     left in float as qexp leaves it,
  3. ranges a conv output that goes into a SiLU whose output qexp quantizes at scale s to
     [-8, 127 s] (nothing outside it survives SiLU and that quantizer), and the other tensors
     qexp does not quantize (the other conv outputs, SiLU's inner tensors) with ORT's MinMax
     calibrator on the job's calibration images.
This rounds tensors qexp's fake-quant model keeps in float, so it loses more mAP than the
Q/DQ export evaluated as it is (yolov8n 640, minmax: -1.2 pt vs -0.7 pt; docs/results/search.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

log = logging.getLogger("qexp")


def _value(g: onnx.GraphProto, name: str) -> np.ndarray | None:
    for i in g.initializer:
        if i.name == name:
            return numpy_helper.to_array(i)
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t)
    return None


def _dequantized(w: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int) -> np.ndarray:
    """DQ(Q(w)): the weight as the Q/DQ pair computes it."""
    shape = [1] * w.ndim
    if scale.ndim:
        shape[axis] = -1
    s = scale.reshape(shape).astype(np.float32)
    z = np.zeros(1, np.int32) if zp is None else zp.reshape(shape).astype(np.int32)
    info = np.iinfo(np.int8 if zp is None else zp.dtype)
    q = np.clip(np.rint(w.astype(np.float32) / s) + z, info.min, info.max)
    return ((q - z) * s).astype(np.float32)


def strip_qdq(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, float], set[str]]:
    """(the float graph, {activation: qexp's scale}, names of the nodes qexp quantized)."""
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}
    rename: dict[str, str] = {}
    scales: dict[str, float] = {}
    dropped: set[int] = set()
    for dq in [n for n in g.node if n.op_type == "DequantizeLinear"]:
        q = prod.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        x = q.input[0]
        scale = _value(g, q.input[1])
        zp = _value(g, q.input[2]) if len(q.input) > 2 else None
        if scale is None:
            continue
        w = _value(g, x)
        if w is not None:  # a weight: bake its quantization in, ORT requantizes it exactly
            axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
            name = f"{x}/fake_quant"
            g.initializer.append(numpy_helper.from_array(_dequantized(w, scale, zp, axis), name))
            rename[dq.output[0]] = name
        else:
            if scale.ndim or (zp is not None and int(zp) != 0):
                raise ValueError(f"activation {x}: only per-tensor symmetric int8 is handled")
            scales[x] = float(scale)
            rename[dq.output[0]] = x
        dropped |= {id(q), id(dq)}
    quantized = set()
    keep = []
    for n in g.node:
        if id(n) in dropped:
            continue
        if any(i in rename for i in n.input):
            quantized.add(n.name)
        for i, name in enumerate(n.input):
            n.input[i] = rename.get(name, name)
        keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    unused = [i for i in g.initializer if i.name not in used]  # the weights before fake-quant
    for i in unused:
        g.initializer.remove(i)
    return model, scales, quantized


# SiLU(x) for x below -8 is within 0.003 of 0: nothing a SiLU passes on is lost by clipping there
SILU_FLOOR = -8.0


def silu_inputs(model: onnx.ModelProto, scales: dict[str, float]) -> dict[str, tuple[float, float]]:
    """The range of each ``x`` of a SiLU (``Mul(x, Sigmoid(x))``) whose output qexp quantizes at
    scale s: [SILU_FLOOR, 127 s]. More is clipped by that quantizer, or by SiLU itself, anyway;
    MinMax over the calibration images would spend the 8 bits on outliers nothing downstream
    keeps (~2 pt mAP50-95 on yolov8n at 640)."""
    sig = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Sigmoid"}
    out = {}
    for n in model.graph.node:
        if n.op_type != "Mul" or n.output[0] not in scales:
            continue
        a, b = n.input[0], n.input[1]
        x = a if sig.get(b) == a else b if sig.get(a) == b else None
        if x is not None:
            out[x] = (SILU_FLOOR, 127 * scales[n.output[0]])
    return out


def _tail(model: onnx.ModelProto, quantized: set[str]) -> list[str]:
    """Nodes downstream of every quantized layer: no quantized layer reads what they make."""
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}
    upstream: set[str] = set()
    stack = [n for n in g.node if n.name in quantized]
    while stack:
        n = stack.pop()
        for i in n.input:
            p = prod.get(i)
            if p is not None and p.name not in upstream:
                upstream.add(p.name)
                stack.append(p)
    return [n.name for n in g.node if n.name not in upstream and n.name not in quantized]


def deploy_form(src: Path, dst: Path, calib: list[np.ndarray], conv_only: bool = False) -> Path:
    """Write the ONNX Runtime deploy form of the Q/DQ ONNX ``src`` to ``dst``; ``conv_only``:
    only the convolutions on integers, the ops between them (SiLU, Add, Concat, ...) in float
    (rounds fewer tensors, so closer to fp32; slower: yolov8n 640 1.6x fp32 against 2.5x)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(src))
    for i, n in enumerate(model.graph.node):
        n.name = n.name or f"node_{i}"
    model, scales, quantized = strip_qdq(model)
    # (a data-movement op's output, e.g. one half of C2f's split, keeps its override: ORT
    # ties it to its input's range; pushing qexp's scale up onto that input instead cost
    # 0.5-1 pt mAP50-95 on yolov8n, measured at 320 and 640)
    convs = {n.name for n in model.graph.node if n.op_type == "Conv"}
    tail = set(_tail(model, quantized))
    excluded = sorted((convs - quantized) | tail)
    float_path = dst.with_name(f"{dst.stem}.float.onnx")
    onnx.save(model, str(float_path))
    feed = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> dict | None:
            x = next(self.it, None)
            return None if x is None else {feed: x}

    overrides: dict[str, list[dict]] = {
        x: [{"scale": np.array(s, np.float32), "zero_point": np.array(128, np.uint8)}]
        for x, s in scales.items()
    }
    for x, (lo, hi) in silu_inputs(model, scales).items():
        overrides.setdefault(
            x, [{"rmin": np.array(lo, np.float32), "rmax": np.array(hi, np.float32)}]
        )
    # quantize_static's messages are advice for its own users (pre-processing, shape
    # inference) that this graph does not need
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        quantize_static(
            str(float_path),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            op_types_to_quantize=["Conv"] if conv_only else None,
            extra_options={"TensorQuantOverrides": overrides, "WeightSymmetric": True},
        )
    finally:
        logging.getLogger().setLevel(quiet)
        float_path.unlink(missing_ok=True)
    log.info(
        "ONNX Runtime deploy form: %d tensors at qexp's scales, %d node(s) left in float",
        len(scales),
        len(excluded),
    )
    return dst
