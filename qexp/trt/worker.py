"""The TensorRT worker process.

    python -m qexp.trt.worker --probe          # JSON: TensorRT version, GPU, capabilities
    python -m qexp.trt.worker REQUEST.json     # build/reuse an engine, measure, write RESPONSE
    python -m qexp.trt.worker --serve          # the same for each request path read on stdin

The response goes to ``<request stem>.response.json`` next to the request, always (``ok=false``
with the error and TensorRT's log tail when anything fails), so the client reports a failed
build instead of a traceback. The exit status is 0 when a response was written.

``--serve`` keeps one process (one per GPU in a sweep) for many requests, so every engine it
builds shares one in-memory timing cache: TensorRT 8.6.0 cannot reload a serialized cache that
holds Myelin entries, but a cache object kept alive in the process works.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import json
import os
import sys
import time
import traceback
from typing import Any

from qexp.trt import protocol
from qexp.trt.build_log import BuildTimeline
from qexp.trt.protocol import Request, Response

_LEVELS = {"error": 1, "warning": 2, "info": 3, "verbose": 4}  # ILogger.Severity values


def response_path(request_path: str) -> str:
    stem = request_path[:-5] if request_path.endswith(".json") else request_path
    return stem + ".response.json"


def make_logger(trt: Any, level: str, tail: int = 200) -> Any:
    """An ILogger that keeps the last ``tail`` lines (for failed builds), echoes warnings to
    ``stream``, and, while a build runs, feeds every line to a BuildTimeline and prints a
    progress line every ``progress_s`` seconds (TensorRT 8.6 has no progress monitor)."""

    class TailLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.keep = _LEVELS.get(level, 2)
            self.stream: Any = sys.stderr
            self.progress_s = 15.0
            self.reset()

        def reset(self) -> None:
            """Forget the previous request (a serving worker reuses its logger)."""
            self.lines: collections.deque[str] = collections.deque(maxlen=tail)
            self.notes: list[str] = []
            self.timeline: BuildTimeline | None = None
            self.raw: Any = None  # a text file: every line of the build, timestamped
            self.next_progress = 0.0

        def log(self, severity: Any, msg: str) -> None:
            sev = int(severity)
            if sev <= max(self.keep, 3):  # keep INFO in the tail: it explains build failures
                self.lines.append(f"[{str(severity).split('.')[-1]}] {msg}")
            if sev <= self.keep:
                print(f"[TRT] {msg}", file=self.stream, flush=True)
            if "timing cache will not be used" in msg:
                # seen with TensorRT 8.6.0: a cache holding Myelin entries fails to load again
                self.notes.append("TensorRT rejected the timing cache (built without it)")
            tl = self.timeline
            if tl is not None:
                tl.line(msg)
                if self.raw is not None:
                    one_line = msg.replace("\n", "\\n")  # one record per line
                    self.raw.write(f"{tl.last - tl.t0:.4f} {sev} {one_line}\n")
                if tl.last >= self.next_progress:
                    self.next_progress = tl.last + self.progress_s
                    print(
                        f"[qexp.trt] building: {tl.last - tl.t0:.0f} s, {tl.phase}, "
                        f"{tl.layers_done} layers tuned, {tl.counts['tactics_timed']} tactics timed",
                        file=self.stream,
                        flush=True,
                    )

        def note(self, msg: str) -> None:
            """Something the user should see in the record (not a TensorRT message)."""
            self.notes.append(msg)
            self.lines.append(f"[qexp] {msg}")
            print(f"[qexp.trt] {msg}", file=self.stream, flush=True)

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


def gpu_info(cuda: Any) -> dict[str, Any]:
    """The GPU this worker runs on: name, UUID, and its index on the host (from
    CUDA_VISIBLE_DEVICES, which the GPU slots of qexp/gpus.py set per job process)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    first = visible.split(",")[0].strip() if visible else "0"
    info: dict[str, Any] = {"name": cuda.device_name(0), "visible_devices": visible or None}
    info["index"] = int(first) if first.isdigit() else first
    with contextlib.suppress(Exception):  # the UUID is informative only
        info["uuid"] = cuda.device_uuid(0)
    return info


def build_or_reuse(req: Request, trt: Any, logger: Any, cuda: Any, resp: Response) -> bytes:
    from qexp.trt import build, execute

    meta_path = req.engine + ".json"
    if req.reuse_engine and os.path.exists(req.engine) and os.path.exists(meta_path):
        with open(req.engine, "rb") as f:
            plan = f.read()
        with open(meta_path) as f:
            stats = json.load(f)["stats"]
        resp.reused_engine = True
        logger.note(f"reused engine {req.engine} (built in {stats['build_s']:.1f} s)")
    else:
        if req.build_profile:
            logger.timeline = BuildTimeline()
            # the raw log too (a few MB gzipped): the evidence behind the profile's numbers
            logger.raw = gzip.open(os.path.join(req.out_dir, "build_log.txt.gz"), "wt")  # noqa: SIM115
        try:
            t = time.perf_counter()
            lock = execute.gpu_lock_path(req.latency_lock, resp.device)
            with execute.building(lock, req.build_slots):
                resp.timings["build_lock_wait"] = time.perf_counter() - t
                plan, stats = build.build(trt, req, logger, cuda, logger)
        finally:
            timeline, logger.timeline = logger.timeline, None
            if logger.raw is not None:
                logger.raw.close()
                logger.raw = None
            if timeline is not None:
                resp.build_profile = os.path.join(req.out_dir, "build_profile.json")
                with open(resp.build_profile, "w") as f:
                    json.dump(timeline.summary(), f, indent=1)
        os.makedirs(os.path.dirname(os.path.abspath(req.engine)), exist_ok=True)
        with open(req.engine + ".tmp", "wb") as f:
            f.write(plan)
        os.replace(req.engine + ".tmp", req.engine)
        with open(meta_path, "w") as f:  # written last: its presence marks a complete engine
            json.dump({"stats": stats, "tensorrt": resp.tensorrt, "gpu": resp.gpu}, f)
    resp.build_s = float(stats["build_s"])
    resp.build_stats = {k: float(v) for k, v in stats.items()}
    resp.engine, resp.engine_bytes = req.engine, len(plan)
    return plan


def serve(req: Request, trt: Any, logger: Any, cuda: Any = None) -> Response:
    from qexp.trt import build, compat, execute
    from qexp.trt.cuda import Cuda

    resp = Response(ok=False, tensorrt=compat.version(trt), pid=os.getpid())
    t = time.perf_counter()
    cuda = cuda or Cuda()
    resp.device = gpu_info(cuda)
    resp.gpu = resp.device["name"]
    cuda.ensure_stream()
    os.makedirs(req.out_dir, exist_ok=True)
    plan = build_or_reuse(req, trt, logger, cuda, resp)
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
                if b == req.eval_batch or not resp.outputs:
                    continue
                resp.batch_diff[str(b)] = execute.batch_check(
                    other, req.eval_input, resp.outputs[0]
                )
                if req.eval_all_batches:  # the client scores these too: mAP per batch size
                    sub = os.path.join(req.out_dir, f"b{b}")
                    os.makedirs(sub, exist_ok=True)
                    resp.outputs_by_batch[str(b)], _ = execute.run_eval(other, req.eval_input, sub)
        resp.timings["eval"] = time.perf_counter() - t
        t = time.perf_counter()
        # no other job times on the host while this one does, and no build runs on its GPU
        gpu_lock = execute.gpu_lock_path(req.latency_lock, resp.device)
        with execute.host_lock(req.latency_lock), execute.timing_alone(gpu_lock):
            resp.timings["latency_lock_wait"] = time.perf_counter() - t
            t = time.perf_counter()
            for b, ctx in contexts.items():
                resp.latency[str(b)] = execute.latency(
                    ctx, req.warmup, req.iters, req.cuda_graph, logger
                )
            resp.timings["latency"] = time.perf_counter() - t
            if req.profile_iters > 0:  # per-layer times: alone on the GPU too
                t = time.perf_counter()
                first = contexts[sizes[0]]
                resp.layer_profile = os.path.join(req.out_dir, f"layer_profile_b{first.batch}.json")
                with open(resp.layer_profile, "w") as f:
                    json.dump(execute.layer_profile(trt, first, req.profile_iters), f, indent=1)
                resp.timings["profile"] = time.perf_counter() - t
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
    finally:
        for ctx in contexts.values():
            ctx.free()
    resp.ok = True
    return resp


class Session:
    """What a worker keeps between requests: TensorRT, its logger, CUDA and, through
    build.SHARED_TIMING_CACHE, the timing cache of every engine built in this process."""

    def __init__(self) -> None:
        self.trt: Any = None
        self.logger: Any = None
        self.cuda: Any = None

    def handle(self, req_path: str, stream: Any = None) -> Response:
        """Serve one request file; the response is also written next to it, always."""
        out_path = response_path(req_path)
        resp = Response(ok=False, pid=os.getpid())
        try:
            req = protocol.read(Request, req_path)
            req.validate()
            if self.trt is None:
                import tensorrt as trt

                self.trt = trt
            from qexp.trt import compat

            resp.tensorrt = compat.version(self.trt)
            if self.logger is None:
                self.logger = make_logger(self.trt, req.log_level)
            self.logger.reset()
            self.logger.keep = _LEVELS.get(req.log_level, 2)
            self.logger.stream = stream or sys.stderr
            if self.cuda is None:
                from qexp.trt.cuda import Cuda

                self.cuda = Cuda()
            resp = serve(req, self.trt, self.logger, self.cuda)
        except Exception as e:  # noqa: BLE001 - every failure becomes a response
            from qexp.trt.compat import Unsupported

            resp.ok, resp.pid = False, os.getpid()
            resp.unsupported = isinstance(e, Unsupported)
            resp.error = f"{type(e).__name__}: {e}"
            if not isinstance(e, (Unsupported, protocol.ProtocolError)):
                resp.error += "\n" + traceback.format_exc(limit=8)[-3000:]
        if self.logger is not None:
            resp.log_tail = list(self.logger.lines)[-60:] if not resp.ok else []
            resp.notes = list(self.logger.notes)
        protocol.write(resp, out_path)
        return resp


def serve_forever(session: Session, inp: Any, out: Any) -> int:
    """``--serve``: one request path per line on ``inp``; after each, ``done <response
    path>`` on ``out``. Ends at end of input (the client closed the pipe or died). Each
    request's log goes to ``worker.log`` next to its request file."""
    for line in inp:
        req_path = line.strip()
        if not req_path:
            continue
        log_path = os.path.join(os.path.dirname(os.path.abspath(req_path)), "worker.log")
        with open(log_path, "a") as log:
            session.handle(req_path, stream=log)
        print(f"done {response_path(req_path)}", file=out, flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"]:
        print(json.dumps(probe()))
        return 0
    if argv[:1] == ["--serve"]:
        return serve_forever(Session(), sys.stdin, sys.stdout)
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    Session().handle(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
