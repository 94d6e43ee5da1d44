"""The pre-build check of a Q/DQ ONNX, and the bisection to the pairs TensorRT refuses.

Before a Q/DQ build the TensorRT backend asks ``python -m qexp.trt.precheck`` (the worker's
interpreter, seconds, no tactic timing) whether TensorRT's optimizer accepts the graph. When it
refuses, this module removes activation Q/DQ pairs (their readers read the float tensor again)
and asks again, bisecting to a small set of pairs whose removal is enough, each named with the
layer it feeds, the op pattern around it and the ``ignore.patterns`` entry that keeps that layer
float. The backend then fails the job with that message (``backend.precheck=fail``, the default)
or builds the graph without those pairs and records what it dropped (``backend.precheck=drop``).

    python -m qexp.backends.trt_precheck MODEL_qdq.onnx [--out precheck.json]   # by hand
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from qexp.backends.trt_client import TensorRTError, worker_env
from qexp.backends.trt_results import write_text
from qexp.cache import file_hash
from qexp.contracts import Choice
from qexp.job import Job
from qexp.trt.precheck import ERROR, PASS, REFUSED

log = logging.getLogger("qexp")


class PrecheckMode(Choice):
    """What the pre-build check of a Q/DQ graph does when TensorRT's optimizer refuses it."""

    off = "off"  # no check: a refused graph fails inside the build
    fail = "fail"  # fail the job in seconds, naming the refused pairs and the ignore patterns
    drop = "drop"  # build without the refused pairs (those layers float) and record them


class PrecheckError(RuntimeError):
    """A check that gave no verdict (the interpreter or the ONNX is broken)."""


@dataclass
class Pair:
    """One activation QuantizeLinear and its DequantizeLinear nodes."""

    q: str
    dq: list[str]
    tensor: str  # the float tensor the Q reads
    producer: str  # op type that makes it ("input" for a graph input)
    consumers: list[str]  # op types that read the DQ outputs
    layer: str  # the module the quantizer belongs to, as ignore.patterns names modules

    @property
    def pattern(self) -> str:
        return f"{self.producer} -> Q/DQ -> {','.join(self.consumers) or '(output)'}"


@dataclass
class Verdict:
    onnx: str
    pairs: int
    accepted: bool  # as exported
    culprits: list[Pair] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["culprits"] = [asdict(p) | {"pattern": p.pattern} for p in self.culprits]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Verdict:
        names = {f.name for f in Pair.__dataclass_fields__.values()}
        pairs = [Pair(**{k: v for k, v in c.items() if k in names}) for c in d.get("culprits", [])]
        return cls(**{k: v for k, v in d.items() if k != "culprits"}, culprits=pairs)

    def ignore_patterns(self) -> list[str]:
        return sorted({p.layer for p in self.culprits})

    def message(self) -> str:
        if self.accepted:
            return f"TensorRT accepts {Path(self.onnx).name} ({self.pairs} activation Q/DQ pairs)"
        if not self.culprits:
            return f"TensorRT refuses {Path(self.onnx).name}: {self.note}"
        lines = [
            f"TensorRT's optimizer refuses {len(self.culprits)} of {self.pairs} activation "
            f"Q/DQ pairs of {Path(self.onnx).name} (pre-build check, {self.seconds:.0f} s, "
            f"{len(self.checks)} checks):"
        ]
        lines += [f"  {p.layer}: {p.pattern} (tensor {p.tensor})" for p in self.culprits]
        pats = ",".join(self.ignore_patterns())
        lines.append(
            f"keep them float with ignore.patterns=[{pats}], or let qexp drop those pairs and "
            "build: backend.precheck=drop"
        )
        return "\n".join(lines)


def layer_of(q_name: str) -> str:
    """``/model.10/m/m.0/attn/pe/conv/input_quantizer/QuantizeLinear`` -> ``model.10.m.0.attn.pe.conv``:
    the module path before the quantizer's own component. torch's export scopes name a
    container's child after the container (``m`` then ``m.0``), so such a pair is one name."""
    parts: list[str] = []
    for p in (p for p in q_name.split("/") if p):
        if p.endswith("quantizer"):
            return ".".join(parts)
        if parts and p.startswith(parts[-1] + "."):
            parts[-1] = p
        else:
            parts.append(p)
    return ".".join(parts[:-1]) if len(parts) > 1 else q_name


def activation_pairs(model: onnx.ModelProto) -> list[Pair]:
    """QuantizeLinear nodes on activations (not initializers or constants) with their DQs."""
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    pairs = []
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in consts:
            continue
        dqs = [c for c in readers.get(q.output[0], []) if c.op_type == "DequantizeLinear"]
        if not dqs:
            continue
        src = producer.get(q.input[0])
        after = sorted({c.op_type for dq in dqs for c in readers.get(dq.output[0], [])})
        pairs.append(
            Pair(q.name, [d.name for d in dqs], q.input[0],
                 src.op_type if src is not None else "input", after, layer_of(q.name))
        )  # fmt: skip
    return pairs


def without(model: onnx.ModelProto, pairs: Sequence[Pair]) -> onnx.ModelProto:
    """A copy of ``model`` where ``pairs`` are gone: their readers read the float tensor."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    drop = {p.q for p in pairs} | {d for p in pairs for d in p.dq}
    by_dq = {d: p.tensor for p in pairs for d in p.dq}
    rename = {n.output[0]: by_dq[n.name] for n in m.graph.node if n.name in by_dq}
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


def culprits(refused_without: Callable[[list[Pair]], bool], pairs: list[Pair]) -> list[Pair]:
    """A small set S of pairs whose removal is enough (each member needed given the others
    out), for a graph refused as exported and accepted without all of ``pairs``: binary search
    for the shortest prefix whose removal passes, keep its last pair, repeat on the rest with
    that pair removed; pairs of the same op pattern as one found are tried together first."""
    found: list[Pair] = []
    rest = list(pairs)
    while refused_without(found):
        if found:
            last = found[-1]
            same = [p for p in rest if (p.producer, p.consumers) == (last.producer, last.consumers)]
            if same and not refused_without(found + same):
                return found + same
        lo, hi = 1, len(rest)  # removing rest[:hi] passes
        while lo < hi:
            mid = (lo + hi) // 2
            if refused_without(found + rest[:mid]):
                lo = mid + 1
            else:
                hi = mid
        found.append(rest[lo - 1])
        rest = rest[: lo - 1]
    return found


class Checker:
    """Runs ``python -m qexp.trt.precheck`` in the worker's interpreter, one process a check."""

    def __init__(self, exe: str, env: dict[str, str], workdir: Path, batch_sizes: list[int],
                 fp16: bool = True, timeout: float = 300, log: Callable[[str], None] = print):  # fmt: skip
        self.exe, self.env, self.workdir = exe, env, workdir
        self.batch_sizes, self.fp16, self.timeout, self.log = batch_sizes, fp16, timeout, log
        self.checks: list[dict[str, Any]] = []

    def verdict(self, path: Path) -> tuple[str, str]:
        cmd = [self.exe, "-m", "qexp.trt.precheck", str(path), "--batch-sizes",
               *map(str, self.batch_sizes)] + ([] if self.fp16 else ["--no-fp16"])  # fmt: skip
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                               timeout=self.timeout)  # fmt: skip
            out = (p.stdout or "").strip().splitlines()
            last = out[-1] if out else (p.stderr or "").strip()[-600:]
        except subprocess.TimeoutExpired:
            last = f"{ERROR}: no answer in {self.timeout:.0f} s"
        word = last.split(":")[0]
        verdict = word if word in (PASS, REFUSED) else ERROR
        self.checks.append({"onnx": path.name, "verdict": verdict,
                            "s": round(time.perf_counter() - t0, 1), "said": last[-300:]})  # fmt: skip
        return verdict, last

    def refused_without(self, model: onnx.ModelProto, pairs: list[Pair]) -> bool:
        path = self.workdir / f"precheck_{len(self.checks):03d}.onnx"
        onnx.save(without(model, pairs), str(path))
        try:
            verdict, said = self.verdict(path)
        finally:
            path.unlink(missing_ok=True)
        self.log(
            f"pre-build check without {len(pairs)} pairs: {verdict} ({self.checks[-1]['s']} s)"
        )
        if verdict == ERROR:
            raise PrecheckError(f"the pre-build check gave no verdict: {said}")
        return verdict == REFUSED


def precheck(onnx_path: Path, checker: Checker) -> Verdict:
    """Is ``onnx_path`` accepted; if not, which activation Q/DQ pairs are enough to remove."""
    t0 = time.perf_counter()
    model = onnx.load(str(onnx_path))
    pairs = activation_pairs(model)
    v = Verdict(str(onnx_path), len(pairs), accepted=not checker.refused_without(model, []))
    if not v.accepted:
        if checker.refused_without(model, pairs):
            v.note = (
                "refused even without its activation Q/DQ pairs: the weights' Q/DQ or the graph"
            )
        else:
            v.culprits = culprits(lambda ps: checker.refused_without(model, ps), pairs)
    v.checks, v.seconds = checker.checks, round(time.perf_counter() - t0, 1)
    return v


def write_without(onnx_path: Path, culprits_: list[Pair], out: Path) -> Path:
    onnx.save(without(onnx.load(str(onnx_path)), culprits_), str(out))
    return out


def checked_onnx(job: Job, bcfg: Any, onnx_path: Path, sizes: list[int], probe: dict[str, Any],
                 work: Path) -> Path:  # fmt: skip
    """The ONNX a Q/DQ job builds: ``onnx_path`` when TensorRT's optimizer accepts it; without
    the refused pairs with ``backend.precheck=drop``; else the job fails naming them. The
    verdict is cached per (ONNX, TensorRT, GPU, batch sizes, fp16): a re-run asks nothing."""
    entry = job.cache("trt_precheck", file_hash(onnx_path, 16), probe["tensorrt"],
                      probe.get("gpu"), sizes, bcfg.fp16_fallback)  # fmt: skip
    cached = entry / "verdict.json"
    if cached.exists():
        v = Verdict.from_json(json.loads(cached.read_text()))
    else:
        exe, env = worker_env(bcfg)
        v = precheck(onnx_path, Checker(exe, env, work, sizes, bcfg.fp16_fallback, log=log.info))
        write_text(cached, json.dumps(v.to_json(), indent=1))
    job.add_artifact(
        "precheck.json", write_text(job.path("artifacts", "precheck.json"), cached.read_text())
    )
    job.info["precheck"] = {"accepted": v.accepted, "pairs": v.pairs, "checks": len(v.checks),
                            "seconds": v.seconds, "dropped": v.ignore_patterns(),
                            "patterns": sorted({p.pattern for p in v.culprits})}  # fmt: skip
    job.log_metrics({"precheck_s": v.seconds})
    if v.accepted:
        log.info(v.message())
        return onnx_path
    if PrecheckMode(bcfg.precheck) != PrecheckMode.drop or not v.culprits:
        raise TensorRTError(v.message())
    log.warning("%s\nbackend.precheck=drop: building without them", v.message())
    return write_without(onnx_path, v.culprits, work / f"{onnx_path.stem}_precheck.onnx")


def main(argv: list[str] | None = None) -> int:
    from types import SimpleNamespace

    ap = argparse.ArgumentParser(prog="python -m qexp.backends.trt_precheck",
                                 description=__doc__.split("\n")[0])  # fmt: skip
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--no-fp16", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("precheck.json"))
    a = ap.parse_args(argv)
    bcfg = SimpleNamespace(python=os.environ.get("TRT_PYTHON"), lazy_loading=True, jit_cache=None,
                           pythonpath=os.environ.get("TRT_PYTHONPATH", ""),
                           ld_library_path=os.environ.get("TRT_LD_LIBRARY_PATH", ""))  # fmt: skip
    exe, env = worker_env(bcfg)
    checker = Checker(exe, env, a.onnx.resolve().parent, a.batch_sizes, fp16=not a.no_fp16)
    try:
        v = precheck(a.onnx, checker)
    except PrecheckError as e:
        print(e, file=sys.stderr)
        return 1
    a.out.write_text(json.dumps(v.to_json(), indent=1))
    print(v.message())
    return 0 if v.accepted else 3


if __name__ == "__main__":
    sys.exit(main())
