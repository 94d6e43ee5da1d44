#!/usr/bin/env python3
"""Which Q/DQ pairs of an explicit-quantization ONNX make TensorRT refuse it? (GPU machine)

TensorRT 8.6.0 refused qexp's yolov8n Q/DQ export with ``optimizer.cpp::filterQDQFormats:
Assertion !n->candidateRequirements.empty() failed ... node being incorrectly marked as an int8
node``. That assertion fires in the graph optimizer, seconds into a build and before any tactic
is timed, so a build that gets past it tells us the graph is acceptable. This script removes
activation Q/DQ pairs (the consumers read the float tensor again) and asks a fresh TensorRT
process, each time, whether the optimizer still refuses: first with every pair in, then with all
activation pairs out, then halves of the suspects, until it names a small set of pairs whose
removal is enough, with the op types around each (the pattern to fix in the placement).

    python3 scripts/gpu/qdq_probe.py MODEL_qdq.onnx --out probe.json   # after . $STAGE/env.sh
    # one check only (what the driver runs under TensorRT's Python):
    $TRT_PYTHON scripts/gpu/qdq_probe.py --check MODEL.onnx

The driver needs onnx (qexp's Python); the check needs only tensorrt (TRT_PYTHON, TRT_PYTHONPATH,
TRT_LD_LIBRARY_PATH from env.sh). Each check is one process (~15 s: TensorRT's builder setup).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASS, REFUSED, ERROR = "pass", "refused", "error"
REFUSAL = ("filterQDQFormats", "incorrectly marked as an int8 node")
# verbose messages TensorRT prints once the optimizer is done and the tactic search begins
SEARCHING = ("Timing Runner", "Autotuning format combination", "Computing costs for")


def check(onnx_path: str, batch_sizes: list[int]) -> int:
    """Under TensorRT's Python: exit 0 once the tactic search starts, 3 on the refusal."""
    import tensorrt as trt

    class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # noqa: ANN001
            if any(s in msg for s in REFUSAL):
                print(f"{REFUSED}: {msg}", flush=True)
                os._exit(3)
            if any(s in msg for s in SEARCHING):
                print(PASS, flush=True)
                os._exit(0)
            if severity <= trt.ILogger.Severity.ERROR:
                print(f"[TRT] {msg}", flush=True)

    logger = Logger()
    from qexp.trt import build, compat  # standard library + tensorrt, as in the worker

    try:
        builder, network, _parser = build.parse_onnx(trt, logger, onnx_path, strongly_typed=False)
        config = builder.create_builder_config()
        compat.set_flag(trt, config, "FP16")
        compat.set_flag(trt, config, "INT8")
        compat.set_opt_level(config, 0)
        static = int(network.get_input(0).shape[0])  # a static-batch ONNX builds at its batch
        build.add_profiles(builder, network, config, batch_sizes if static < 0 else [static])
    except build.BuildError as e:
        print(f"{ERROR}: {e}", flush=True)
        return 4
    plan = builder.build_serialized_network(network, config)
    print(PASS if plan is not None else f"{ERROR}: no engine", flush=True)
    return 0 if plan is not None else 5


def activation_pairs(model) -> list[dict]:  # noqa: ANN001
    """QuantizeLinear nodes on activations (not initializers) with their DequantizeLinear."""
    inits = {i.name for i in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    pairs = []
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in inits | consts:
            continue
        dqs = [c for c in consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"]
        if not dqs:
            continue
        src = producer.get(q.input[0])
        after = sorted({c.op_type for dq in dqs for c in consumers.get(dq.output[0], [])})
        pairs.append({
            "q": q.name, "dq": [d.name for d in dqs], "tensor": q.input[0],
            "from": src.op_type if src is not None else "input", "to": after,
        })  # fmt: skip
    return pairs


def without(model, pairs: list[dict]):  # noqa: ANN001
    """A copy of ``model`` where the given pairs are gone (their readers read the float tensor)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    drop = {p["q"] for p in pairs} | {d for p in pairs for d in p["dq"]}
    rename = {}
    for n in m.graph.node:
        if n.name in drop and n.op_type == "DequantizeLinear":
            q_in = next(p["tensor"] for p in pairs if n.name in p["dq"])
            rename[n.output[0]] = q_in
    keep = [n for n in m.graph.node if n.name not in drop]
    for n in keep:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    for o in m.graph.output:
        if o.name in rename:  # a graph output: keep a node that names it
            keep.append(onnx.helper.make_node("Identity", [rename[o.name]], [o.name]))
    del m.graph.node[:]
    m.graph.node.extend(keep)
    return m


class Prober:
    def __init__(self, model, workdir: Path, batch_sizes: list[int], timeout: float) -> None:  # noqa: ANN001
        self.model, self.workdir, self.batch_sizes, self.timeout = (
            model,
            workdir,
            batch_sizes,
            timeout,
        )
        self.log: list[dict] = []

    def refused_without(self, pairs: list[dict]) -> bool:
        import onnx

        path = self.workdir / f"probe{len(self.log):03d}.onnx"
        onnx.save(without(self.model, pairs), str(path))
        env = dict(os.environ)
        repo = str(Path(__file__).resolve().parents[2])  # qexp.trt, as the worker imports it
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.environ.get("TRT_PYTHONPATH"), repo) if p
        )
        env["LD_LIBRARY_PATH"] = os.environ.get(
            "TRT_LD_LIBRARY_PATH", env.get("LD_LIBRARY_PATH", "")
        )
        cmd = [os.environ.get("TRT_PYTHON", sys.executable), __file__, "--check", str(path),
               "--batch-sizes", *map(str, self.batch_sizes)]  # fmt: skip
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=self.timeout)
            out = (p.stdout + p.stderr).strip()
        except subprocess.TimeoutExpired:
            out = f"{ERROR}: no answer in {self.timeout:.0f} s"
        verdict = PASS if out.startswith(PASS) or f"\n{PASS}" in out else (
            REFUSED if REFUSED in out else ERROR)  # fmt: skip
        self.log.append({"removed": len(pairs), "verdict": verdict, "s": round(time.perf_counter() - t0, 1),
                         "tail": out[-300:]})  # fmt: skip
        print(f"  removed {len(pairs):3d} pairs: {verdict} ({self.log[-1]['s']} s)", flush=True)
        path.unlink(missing_ok=True)
        if verdict == ERROR:
            raise RuntimeError(f"check failed without an answer: {out[-800:]}")
        return verdict == REFUSED


def culprits(prober: Prober, pairs: list[dict]) -> list[dict]:
    """A small set S of pairs whose removal is enough (each member needed given the others out):
    binary search for the shortest prefix whose removal passes, keep its last pair, repeat on
    the rest with that pair (and every pair of the same pattern, tried first) removed."""
    found: list[dict] = []
    rest = list(pairs)
    while prober.refused_without(found):
        pattern = (
            [p for p in rest if (p["from"], p["to"]) == (found[-1]["from"], found[-1]["to"])]
            if found
            else []
        )
        if pattern and not prober.refused_without(found + pattern):
            return found + pattern
        lo, hi = 1, len(rest)  # removing rest[:hi] passes (checked by the caller for all)
        while lo < hi:
            mid = (lo + hi) // 2
            if prober.refused_without(found + rest[:mid]):
                lo = mid + 1
            else:
                hi = mid
        found.append(rest[lo - 1])
        rest = rest[: lo - 1]
        print(f"  needed: {found[-1]['q']} ({found[-1]['from']} -> {found[-1]['to']})", flush=True)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("onnx")
    ap.add_argument(
        "--check", action="store_true", help="one build check (under TensorRT's Python)"
    )
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--out", default="qdq_probe.json")
    a = ap.parse_args()
    if a.check:
        return check(a.onnx, a.batch_sizes)

    import onnx

    model = onnx.load(a.onnx)
    pairs = activation_pairs(model)
    print(f"{a.onnx}: {len(pairs)} activation Q/DQ pairs", flush=True)
    report: dict = {"onnx": a.onnx, "pairs": len(pairs)}
    with tempfile.TemporaryDirectory() as d:
        prober = Prober(model, Path(d), a.batch_sizes, a.timeout)
        try:
            if not prober.refused_without([]):
                report["verdict"] = "TensorRT accepts the graph as exported"
            elif prober.refused_without(pairs):
                report["verdict"] = (
                    "refused even without activation Q/DQ: the weights' Q/DQ or the graph"
                )
            else:
                found = culprits(prober, pairs)
                report["verdict"] = f"accepted once these {len(found)} pairs are removed"
                report["culprits"] = found
        except RuntimeError as e:
            report["verdict"] = f"probe stopped: {e}"
        report["checks"] = prober.log
    Path(a.out).write_text(json.dumps(report, indent=1))
    print(report["verdict"])
    for c in report.get("culprits", []):
        print(f"  {c['q']}: {c['from']} -> Q/DQ -> {','.join(c['to'])}  ({c['tensor']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
