"""Does the exported Q/DQ ONNX compute what the torch fake-quant model computes?

    .venv/bin/python scripts/qdq_parity.py model=yolov5n observer=mse --images 4 --map
    .venv/bin/python scripts/qdq_parity.py model=yolov8n quantizer=ptq_modelopt observer=minmax

PTQ (native, or ModelOpt's with ``quantizer=ptq_modelopt``; calibration read from the cache
under ``paths.cache_dir``), exported to Q/DQ ONNX,
then on a few letterboxed ``data`` images:

1. structure: every activation Q/DQ pair of the ONNX against every torch activation quantizer
   call, in execution order (count, scale, zero point); where the two see bit-identical inputs,
   how many quantized values differ (a rounding-rule difference: x/scale vs x*(1/scale));
2. divergence: the share of quantized values one step apart, torch vs ONNX Runtime, next to
   the same share between torch and torch with one conv's output moved by 1 ulp (the noise
   floor: what a last-bit difference between two convolution libraries does);
3. with ``--map``: mAP50-95 on the whole ``data`` set for torch, ORT, and torch with each 1-ulp
   perturbation, i.e. how far float rounding alone moves the metric.

A single conv's 1-ulp change rarely moves a value across a rounding boundary (a few elements per
image), but one such flip propagates; ``*:+1`` perturbs every quantized layer, as two
convolution libraries that sum in different orders do.

Everything runs on one thread (torch and ORT) so the numbers are reproducible.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def activation_quantizers(model, act_type):
    """(the enabled activation quantizers of ``model``, module -> its scale): ours, or
    ModelOpt's input quantizers (quantizer.impl=modelopt)."""
    ours = [m for m in model.modules() if isinstance(m, act_type) and m.enabled]
    if ours:
        return ours, lambda m: float(m.scale())
    theirs = [
        m
        for n, m in model.named_modules()
        if n.endswith("input_quantizer") and m.is_enabled and m.amax is not None
    ]
    return theirs, lambda m: float(m.amax) / m.maxbound


def quantized_layers(model) -> list[str]:
    """Names of the layers that quantize their input (our Quant* twins or ModelOpt's)."""
    return [n for n, m in model.named_modules() if hasattr(m, "input_quantizer")]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides (model=..., observer=...)")
    ap.add_argument("--images", type=int, default=4, help="images for the per-point checks")
    ap.add_argument(
        "--perturb",
        default="model.0.conv:+1,model.0.conv:-1",
        help="comma-separated LAYER:+1|-1: move LAYER's output (LAYER *: every quantized "
        "layer's) by one ulp up or down; threads:N: run torch on N threads",
    )
    ap.add_argument("--map", action="store_true", help="also evaluate mAP of every variant")
    args = ap.parse_args(argv)

    from qexp import offline

    offline.setup()
    import onnx
    import onnxruntime as ort
    import torch
    from hydra import compose, initialize_config_dir
    from onnx import helper

    from qexp.config_store import register_configs
    from qexp.data import load_eval_data
    from qexp.eval.evaluator import evaluate
    from qexp.job import Job
    from qexp.models.detector import torch_predict
    from qexp.quant.export import _constants
    from qexp.quant.fakequant import ActQuantizer
    from qexp.registry import MODEL_FAMILIES, QUANTIZERS

    torch.set_num_threads(1)
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        base = [] if any(o.startswith("quantizer=") for o in args.overrides) else ["quantizer=ptq"]
        cfg = compose("config", overrides=[*base, "tracking=none", *args.overrides])
    tmp = Path(tempfile.mkdtemp(prefix="qexp-parity-"))
    job = Job(cfg=cfg, dir=tmp, cache_dir=Path(cfg.paths.cache_dir).resolve())
    imgsz = int(cfg.model.imgsz)
    det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    data = load_eval_data(cfg.data, job)
    deploy = QUANTIZERS.build(job.settings.quantizer).quantize(job, det, data)
    qmodel = deploy.module.eval()
    path = deploy.export(tmp / "qdq")
    name = f"{cfg.model.name} observer={cfg.observer.act}"
    print(f"{name}: calibration cache {deploy.info['calib_cache']}")

    # activation Q/DQ pairs in graph order: (Q input, DQ output, scale, zero point)
    model = onnx.load(str(path))
    consts = _constants(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    points = []
    for n in model.graph.node:
        q = producer.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in consts:
            zp = consts[q.input[2]] if len(q.input) > 2 and q.input[2] else np.zeros(1)
            points.append((q.input[0], n.output[0], float(consts[q.input[1]]), int(zp.max())))
    quantizers, scale_of = activation_quantizers(qmodel, ActQuantizer)
    calls: list[tuple[torch.nn.Module, np.ndarray, np.ndarray]] = []

    def record(mod, inp, out):
        calls.append((mod, inp[0].detach().numpy().copy(), out.detach().numpy().copy()))

    handles = [m.register_forward_hook(record) for m in quantizers]

    class Perturbed:
        """LAYER:+1|-1 (``*``: every quantized layer): output moved by one ulp while held;
        threads:N: torch on N threads (another summation order in oneDNN's convolutions)."""

        def __init__(self, spec: str) -> None:
            layer, arg = spec.rsplit(":", 1)
            self.handles = []
            if layer == "threads":
                torch.set_num_threads(int(arg))
                return
            direction = float("inf") if float(arg) > 0 else -float("inf")
            names = quantized_layers(qmodel) if layer == "*" else [layer]
            self.handles = [
                qmodel.get_submodule(n).register_forward_hook(
                    lambda _m, _i, out: torch.nextafter(out, torch.full_like(out, direction))
                )
                for n in names
            ]

        def remove(self) -> None:
            torch.set_num_threads(1)
            for h in self.handles:
                h.remove()

    perturbed = Perturbed

    def torch_run(x: np.ndarray, spec: str | None = None):
        calls.clear()
        h = perturbed(spec) if spec else None
        with torch.inference_mode():
            raw = det.raw(qmodel(torch.from_numpy(x))).float().numpy()
        if h:
            h.remove()
        return raw, [(c[1], c[2]) for c in calls]

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(
        helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
        for p in points
        for t in p[:2]
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    sprobe = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    iname, n_out = sess.get_inputs()[0].name, len(model.graph.output)

    def ort_run(x: np.ndarray):
        outs = sprobe.run(None, {iname: x})
        acts = outs[n_out:]
        return outs[0], [(acts[2 * i], acts[2 * i + 1]) for i in range(len(points))]

    x0 = next(iter(data.batches(imgsz, 1, det.stride, rect=False))).images
    torch_run(x0)
    print(f"activation quantizers: ONNX Q/DQ pairs {len(points)}, torch calls {len(calls)}")
    if len(points) != len(calls):
        print("STRUCTURAL MISMATCH: the two graphs quantize a different number of tensors")
        return 1
    rel = max(
        abs(p[2] - scale_of(c[0])) / scale_of(c[0]) for p, c in zip(points, calls, strict=True)
    )
    print(f"scales: max relative difference {rel:.2e}; ONNX zero points all 0: "
          f"{all(p[3] == 0 for p in points)}")  # fmt: skip
    scales = np.array([p[2] for p in points])
    specs = [s for s in args.perturb.split(",") if s]

    def steps(acts):
        return [np.rint(d / s) for (_, d), s in zip(acts, scales, strict=True)]

    flip = {k: np.zeros(len(points)) for k in ["ort", *specs]}
    raw_d: dict[str, list[float]] = {k: [] for k in flip}
    local, same_total = 0, 0
    batches = data.batches(imgsz, 1, det.stride, rect=False)
    for _, b in zip(range(args.images), batches, strict=False):
        x = np.ascontiguousarray(b.images)
        t_raw, t_acts = torch_run(x)
        t_steps = steps(t_acts)
        o_raw, o_acts = ort_run(x)
        assert np.array_equal(o_raw, sess.run(None, {iname: x})[0])  # probe outputs change nothing
        for (ti, _), (oi, _), ts, os_ in zip(t_acts, o_acts, t_steps, steps(o_acts), strict=True):
            same = ti == oi
            local += int((ts[same] != os_[same]).sum())
            same_total += int(same.sum())
        others = {"ort": (o_raw, o_acts), **{s: torch_run(x, s) for s in specs}}
        for k, (raw, acts) in others.items():
            diff = [float((a != b).mean()) for a, b in zip(t_steps, steps(acts), strict=True)]
            flip[k] += np.array(diff) / args.images
            raw_d[k].append(float(np.abs(raw - t_raw).mean()))
    print(f"same input, different quantized value (torch vs ORT): {local} of {same_total}")
    print(f"torch against ..., {args.images} images: share of quantized values a step or more apart "
          "(mean / max over quantizers), raw output mean |diff|")  # fmt: skip
    for k in flip:
        name = "ONNX Runtime" if k == "ort" else f"torch with {k}"
        print(f"  {name:40s} {flip[k].mean():.4f} / {flip[k].max():.4f}   {np.mean(raw_d[k]):.5f}")
    if not args.map:
        return 0

    for h in handles:
        h.remove()

    def ort_predict(x):
        return sess.run(None, {iname: x})[0]

    variants = {"torch": None, "ort": None, **{s: s for s in specs}}
    for k, spec in variants.items():
        h = perturbed(spec) if spec else None
        predict = ort_predict if k == "ort" else torch_predict(det, qmodel)
        t = time.perf_counter()
        r = evaluate(predict, det, data, imgsz, 1, False, None, scope=k)
        if h:
            h.remove()
        m = {key: round(100 * r[key], 3) for key in ("map50_95", "map50")}
        print(json.dumps({"variant": k, **m, "s": round(time.perf_counter() - t)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
