"""Why qexp's Q/DQ INT8 is slower than fp32 on ONNX Runtime (x86), and which INT8 form is not.

Times, in one process and interleaved round by round (so load from other work on a shared
machine hits every variant alike), batch-1 sessions of:
  fp32            the fp32 export
  qdq             qexp's Q/DQ export as the backend ran it before (int8 activations S8,
                  weights quantized at run time by a QuantizeLinear on the fp32 weight)
  qlinear         its deploy form for ORT's integer kernels (backend.int8_form=qlinear,
                  qexp/backends/ort_int8.py); qlinear_conv: only the convolutions on integers
  ort_static_*    ONNX Runtime's own quantize_static of the fp32 export, for reference
and, for each, what ORT made of it: the op counts of the optimised graph it writes
(``optimized_model_filepath``), e.g. how many convolutions became QLinearConv.

  python scripts/bench_ort_int8.py --fp32 A.onnx --qdq B.onnx [--threads 1] [--rounds 5]
  (A and B: a job's ``onnx`` artifact for quantizer=none and quantizer=ptq, same imgsz)
"""

from __future__ import annotations

import argparse
import collections
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from qexp.backends.ort_int8 import deploy_form
from qexp.threads import ort_options


def session(path: Path, threads: int, optimized: Path | None = None) -> ort.InferenceSession:
    so = ort_options(ort.SessionOptions(), threads)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if optimized is not None:
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def op_counts(path: Path) -> str:
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    keep = ("QLinearConv", "ConvInteger", "Conv", "FusedConv", "QuantizeLinear",
            "DequantizeLinear", "QLinearSigmoid", "QLinearMul", "QLinearAdd", "QLinearConcat")  # fmt: skip
    return " ".join(f"{k}={ops[k]}" for k in keep if ops.get(k))


def images(shape: tuple[int, ...], n: int, seed: int = 0) -> list[np.ndarray]:
    """Letterbox-like inputs in 0..1: timing does not depend on the pixels' content."""
    rng = np.random.default_rng(seed)
    return [rng.random(shape, dtype=np.float32) for _ in range(n)]


def ort_static(fp32: Path, out: Path, calib: list[np.ndarray], act: str) -> Path:
    """ONNX Runtime's own static quantization (QDQ, per-channel weights, MinMax ranges)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = session(fp32, 1).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> dict | None:
            x = next(self.it, None)
            return None if x is None else {name: x}

    quantize_static(
        str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8 if act == "u8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fp32", type=Path, required=True)
    p.add_argument("--qdq", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=20, help="timed calls per variant and round")
    p.add_argument("--no-ort-static", action="store_true")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ort-int8-"))
    shape = tuple(session(a.fp32, 1).get_inputs()[0].shape)
    calib = images(shape, 16)
    qlinear = deploy_form(a.qdq, tmp / "qlinear.onnx", calib)
    conv = deploy_form(a.qdq, tmp / "qlinear_conv.onnx", calib, conv_only=True)
    variants = {"fp32": a.fp32, "qdq": a.qdq, "qlinear": qlinear, "qlinear_conv": conv}
    if not a.no_ort_static:
        for act in ("u8", "s8"):
            variants[f"ort_static_{act}s8"] = ort_static(
                a.fp32, tmp / f"static_{act}.onnx", calib, act
            )
    sessions, graphs = {}, {}
    for k, path in variants.items():
        sessions[k] = session(path, a.threads, tmp / f"{k}.opt.onnx")
        graphs[k] = op_counts(tmp / f"{k}.opt.onnx")
    x = calib[0]
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(a.rounds):
        for k, s in sessions.items():
            feed = {s.get_inputs()[0].name: x}
            for _ in range(3):
                s.run(None, feed)
            for _ in range(a.iters):
                t = time.perf_counter()
                s.run(None, feed)
                times[k].append((time.perf_counter() - t) * 1e3)
    ref = float(np.median(times["fp32"]))
    print(f"onnxruntime {ort.__version__}, {platform.processor() or platform.machine()}, "
          f"{a.threads} thread(s), input {shape}, {a.rounds} rounds x {a.iters} calls")  # fmt: skip
    print(f"{'variant':<16} {'p50 ms':>8} {'p90 ms':>8} {'x fp32':>7}  optimised graph")
    for k, t in times.items():
        p50, p90 = float(np.median(t)), float(np.percentile(t, 90))
        print(f"{k:<16} {p50:8.2f} {p90:8.2f} {ref / p50:7.2f}  {graphs[k]}")


if __name__ == "__main__":
    main()
