"""The TensorRT worker process.

    python -m qexp.trt.worker --probe          # JSON: TensorRT version, GPU, capabilities
    python -m qexp.trt.worker REQUEST.json     # build/reuse an engine, measure, write RESPONSE

The response goes to ``<request stem>.response.json`` next to the request, always (``ok=false``
with the error and TensorRT's log tail when anything fails), so the client reports a failed
build instead of a traceback. The exit status is 0 when a response was written.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
import traceback
from typing import Any

from qexp.trt import protocol
from qexp.trt.protocol import Request, Response

_LEVELS = {"error": 1, "warning": 2, "info": 3, "verbose": 4}  # ILogger.Severity values


def response_path(request_path: str) -> str:
    stem = request_path[:-5] if request_path.endswith(".json") else request_path
    return stem + ".response.json"


def make_logger(trt: Any, level: str, tail: int = 200) -> Any:
    """An ILogger that keeps the last ``tail`` lines (for failed builds) and echoes warnings."""

    class TailLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: collections.deque[str] = collections.deque(maxlen=tail)
            self.notes: list[str] = []
            self.keep = _LEVELS.get(level, 2)

        def log(self, severity: Any, msg: str) -> None:
            sev = int(severity)
            if sev <= max(self.keep, 3):  # keep INFO in the tail: it explains build failures
                self.lines.append(f"[{str(severity).split('.')[-1]}] {msg}")
            if sev <= self.keep:
                print(f"[TRT] {msg}", file=sys.stderr, flush=True)
            if "timing cache will not be used" in msg:
                # seen with TensorRT 8.6.0: a cache holding Myelin entries fails to load again
                self.notes.append("TensorRT rejected the timing cache (built without it)")

        def note(self, msg: str) -> None:
            """Something the user should see in the record (not a TensorRT message)."""
            self.notes.append(msg)
            self.lines.append(f"[qexp] {msg}")
            print(f"[qexp.trt] {msg}", file=sys.stderr, flush=True)

    return TailLogger()


def probe() -> dict[str, Any]:
    """Can this interpreter build engines? Never raises: the answer says why not."""
    out: dict[str, Any] = {"ok": False, "python": sys.version.split()[0]}
    try:
        import tensorrt as trt
    except Exception as e:  # noqa: BLE001 - ImportError, or a missing shared library (OSError)
        out["error"] = f"cannot import tensorrt under {sys.executable}: {type(e).__name__}: {e}"
        return out
    from qexp.trt import compat
    from qexp.trt.cuda import Cuda

    out["tensorrt"] = compat.version(trt)
    out["capabilities"] = compat.capabilities(trt)
    try:
        cuda = Cuda()
        n = cuda.device_count()
        out["cuda_devices"] = n
        out["cuda_runtime"] = cuda.runtime_version()
        if n < 1:
            out["error"] = "no CUDA device"
            return out
        out["gpu"] = cuda.device_name(0)
    except Exception as e:  # noqa: BLE001
        out["error"] = f"no usable CUDA device: {e}"
        return out
    out["ok"] = True
    return out


def serve(req: Request, trt: Any, logger: Any) -> Response:
    from qexp.trt import build, compat, execute
    from qexp.trt.cuda import Cuda

    resp = Response(ok=False, tensorrt=compat.version(trt))
    t = time.perf_counter()
    cuda = Cuda()
    resp.gpu = cuda.device_name(0)
    cuda.ensure_stream()
    os.makedirs(req.out_dir, exist_ok=True)
    meta_path = req.engine + ".json"
    if req.reuse_engine and os.path.exists(req.engine) and os.path.exists(meta_path):
        with open(req.engine, "rb") as f:
            plan = f.read()
        with open(meta_path) as f:
            stats = json.load(f)["stats"]
        resp.reused_engine = True
        logger.note(f"reused engine {req.engine} (built in {stats['build_s']:.1f} s)")
    else:
        plan, stats = build.build(trt, req, logger, cuda, logger)
        os.makedirs(os.path.dirname(os.path.abspath(req.engine)), exist_ok=True)
        with open(req.engine + ".tmp", "wb") as f:
            f.write(plan)
        os.replace(req.engine + ".tmp", req.engine)
        with open(meta_path, "w") as f:  # written last: its presence marks a complete engine
            json.dump({"stats": stats, "tensorrt": resp.tensorrt, "gpu": resp.gpu}, f)
    resp.build_s = float(stats["build_s"])
    resp.build_stats = {k: float(v) for k, v in stats.items()}
    resp.engine, resp.engine_bytes = req.engine, len(plan)
    resp.timings["build"] = time.perf_counter() - t

    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise build.BuildError(f"cannot deserialize {req.engine} (built by another TensorRT/GPU?)")
    sizes = list(req.batch_sizes)
    if engine.num_optimization_profiles <= 1:
        # a static-batch engine: its one batch size is the input's
        sizes = sizes[:1]
    contexts = {b: execute.Context(trt, engine, cuda, b, i) for i, b in enumerate(sizes)}
    try:
        t = time.perf_counter()
        if req.eval_input:
            ctx = contexts[req.eval_batch]
            resp.outputs, resp.eval_images = execute.run_eval(ctx, req.eval_input, req.out_dir)
            resp.output_names = list(ctx.outputs)
            for b, other in contexts.items():
                if b != req.eval_batch and resp.outputs:
                    resp.batch_diff[str(b)] = execute.batch_check(
                        other, req.eval_input, resp.outputs[0]
                    )
        resp.timings["eval"] = time.perf_counter() - t
        t = time.perf_counter()
        for b, ctx in contexts.items():
            resp.latency[str(b)] = execute.latency(
                ctx, req.warmup, req.iters, req.cuda_graph, logger
            )
        resp.timings["latency"] = time.perf_counter() - t
        written: dict[str, str] = {}  # JSON text -> path
        for b, ctx in contexts.items():
            # TensorRT 8.6 reports every profile whatever the context ("<layer> [profile 1]"):
            # identical JSON is written once and shared by the batch sizes
            text = json.dumps(execute.inspector_json(trt, engine, ctx), indent=1)
            if text not in written:
                written[text] = os.path.join(req.out_dir, f"layers_b{b}.json")
                with open(written[text], "w") as f:
                    f.write(text)
            resp.layers[str(b)] = written[text]
        if req.profile_iters > 0:
            t = time.perf_counter()
            first = contexts[sizes[0]]
            resp.layer_profile = os.path.join(req.out_dir, f"layer_profile_b{first.batch}.json")
            with open(resp.layer_profile, "w") as f:
                json.dump(execute.layer_profile(trt, first, req.profile_iters), f, indent=1)
            resp.timings["profile"] = time.perf_counter() - t
    finally:
        for ctx in contexts.values():
            ctx.free()
    resp.ok = True
    return resp


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"]:
        print(json.dumps(probe()))
        return 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    req_path = argv[0]
    out_path = response_path(req_path)
    logger = None
    resp = Response(ok=False)
    try:
        req = protocol.read(Request, req_path)
        req.validate()
        import tensorrt as trt

        from qexp.trt import compat

        resp.tensorrt = compat.version(trt)
        logger = make_logger(trt, req.log_level)
        resp = serve(req, trt, logger)
    except Exception as e:  # noqa: BLE001 - every failure becomes a response
        from qexp.trt.compat import Unsupported

        resp.ok = False
        resp.unsupported = isinstance(e, Unsupported)
        resp.error = f"{type(e).__name__}: {e}"
        if not isinstance(e, (Unsupported, protocol.ProtocolError)):
            resp.error += "\n" + traceback.format_exc(limit=8)[-3000:]
    if logger is not None:
        resp.log_tail = list(logger.lines)[-60:] if not resp.ok else []
        resp.notes = list(logger.notes)
    protocol.write(resp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
