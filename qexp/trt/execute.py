"""Run a deserialized engine: eval outputs, CUDA-event latency, per-layer profile, inspector JSON.

One execution context per batch size, each bound to its own optimisation profile and its own
device buffers, so switching batch sizes never re-plans anything mid-measurement.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from qexp.trt import compat
from qexp.trt.calibrator import as_float32
from qexp.trt.cuda import Cuda, CudaError


class Context:
    """An execution context at one batch size with its I/O buffers bound."""

    def __init__(self, trt: Any, engine: Any, cuda: Cuda, batch: int, profile: int) -> None:
        self.trt, self.engine, self.cuda, self.batch = trt, engine, cuda, batch
        self.ctx = engine.create_execution_context()
        if engine.num_optimization_profiles > 1:
            self.ctx.set_optimization_profile_async(profile, cuda.ensure_stream())
            cuda.sync()
        self.inputs, self.outputs = compat.engine_io(engine, trt)
        self.buffers: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, Any] = {}
        for name in self.inputs:
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            shape = (batch, *shape[1:]) if shape[0] < 0 else shape
            if self.ctx.set_input_shape(name, shape) is False:
                raise RuntimeError(f"input {name}: shape {shape} is outside profile {profile}")
        for name in self.inputs + self.outputs:
            shape = tuple(int(d) for d in self.ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"tensor {name} has unresolved shape {shape} at batch {batch}")
            dtype = np.dtype(compat.nptype(trt, engine.get_tensor_dtype(name)))
            self.shapes[name], self.dtypes[name] = shape, dtype
            self.buffers[name] = cuda.malloc(int(np.prod(shape)) * dtype.itemsize)
            self.ctx.set_tensor_address(name, self.buffers[name])

    def enqueue(self) -> None:
        if not self.ctx.execute_async_v3(self.cuda.ensure_stream()):
            raise RuntimeError(f"execute_async_v3 failed at batch {self.batch}")

    def set_input(self, images: np.ndarray) -> None:
        name = self.inputs[0]
        if (
            tuple(images.shape) != self.shapes[name]
        ):  # a CUDA copy would only say "invalid argument"
            raise ValueError(
                f"input {name}: got {tuple(images.shape)}, the context at batch {self.batch} "
                f"holds {self.shapes[name]}"
            )
        self.cuda.h2d(self.buffers[name], images.astype(self.dtypes[name], copy=False))

    def get_outputs(self) -> list[np.ndarray]:
        outs = []
        for name in self.outputs:
            host = np.empty(self.shapes[name], dtype=self.dtypes[name])
            self.cuda.d2h(host, self.buffers[name])
            outs.append(host)
        return outs

    def free(self) -> None:
        for ptr in self.buffers.values():
            self.cuda.free(ptr)
        self.buffers.clear()


def run_eval(ctx: Context, eval_input: str, out_dir: str) -> tuple[list[str], int]:
    """Raw outputs for every eval image, one float32 .npy per network output."""
    images = np.load(eval_input, mmap_mode="r")
    n = int(images.shape[0])
    expect = ctx.shapes[ctx.inputs[0]][1:]
    if tuple(images.shape[1:]) != expect:
        raise ValueError(f"{eval_input}: images are {images.shape[1:]}, the engine wants {expect}")
    paths = [os.path.join(out_dir, f"raw_{i}.npy") for i in range(len(ctx.outputs))]
    files = [
        np.lib.format.open_memmap(p, mode="w+", dtype=np.float32, shape=(n, *ctx.shapes[o][1:]))
        for p, o in zip(paths, ctx.outputs, strict=True)
    ]
    b = ctx.batch
    for start in range(0, n, b):
        chunk = as_float32(np.asarray(images[start : start + b]))
        k = chunk.shape[0]
        if k < b:  # the last, short batch is padded and the padding dropped
            chunk = np.concatenate([chunk, np.zeros((b - k, *chunk.shape[1:]), np.float32)])
        ctx.set_input(chunk)
        ctx.enqueue()
        for f, out in zip(files, ctx.get_outputs(), strict=True):
            f[start : start + k] = out[:k].astype(np.float32)
    for f in files:
        f.flush()
    return paths, n


def batch_check(ctx: Context, eval_input: str, raw_path: str) -> float:
    """Max |diff| between the first output at this batch size and at the eval batch size, on
    the first images: a profile or a rewritten batch axis that computes wrong shows here."""
    images = np.load(eval_input, mmap_mode="r")
    k = min(ctx.batch, int(images.shape[0]))
    chunk = as_float32(np.asarray(images[:k]))
    if k < ctx.batch:
        chunk = np.concatenate([chunk, np.zeros((ctx.batch - k, *chunk.shape[1:]), np.float32)])
    ctx.set_input(chunk)
    ctx.enqueue()
    out = ctx.get_outputs()[0][:k].astype(np.float32)
    ref = np.load(raw_path, mmap_mode="r")[:k]
    return float(np.abs(out - ref).max())


@contextlib.contextmanager
def host_lock(path: str | None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (None: no lock). Jobs on the other GPUs of the host
    take the same lock around their timing, so a batch-1 measurement never shares the host's
    CPU and PCIe with another job's timing loop."""
    if not path:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def gpu_lock_path(latency_lock: str | None, gpu: dict[str, Any]) -> str | None:
    """The per-GPU lock that builds share and timings take alone (beside the host-wide one)."""
    if not latency_lock:
        return None
    tag = str(gpu.get("uuid") or gpu.get("index") or "0").replace("/", "_")
    return os.path.join(os.path.dirname(os.path.abspath(latency_lock)), f"gpu-{tag}.builds")


@contextlib.contextmanager
def _gpu_lock_files(path: str) -> Iterator[tuple[IO[str], IO[str]]]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".gate", "a") as gate, open(path, "a") as f:
        yield gate, f


@contextlib.contextmanager
def build_slot(path: str | None, slots: int | None, poll_s: float = 0.5) -> Iterator[None]:
    """One of ``slots`` build slots of this GPU (``<path>.slot<k>``, flocked): however many
    qexp processes share the GPU (two sweeps started side by side, a search beside a matrix),
    at most ``slots`` of them build on it at once. None or 0: no cap."""
    if not path or not slots:
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    while True:
        for k in range(int(slots)):
            f = open(f"{path}.slot{k}", "a")  # noqa: SIM115 (held until the build ends)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
            return
        time.sleep(poll_s)


@contextlib.contextmanager
def building(path: str | None, slots: int | None = None) -> Iterator[None]:
    """Held while this process builds on its GPU: builds of other jobs run beside it (shared
    lock), at most ``slots`` at once host-wide (``build_slot``), a timing waits for them
    (``timing_alone``), and a build does not start while a timing waits or runs (the gate), so
    timings are never starved by a stream of builds. The slot is taken before the gate: a build
    waiting for a slot never holds up a timing."""
    if not path:
        yield
        return
    with build_slot(path, slots), _gpu_lock_files(path) as (gate, f):
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(f, fcntl.LOCK_SH)
        fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def timing_alone(path: str | None) -> Iterator[None]:
    """Held while this process times on its GPU: no build of another job runs on it meanwhile
    (a tactic search beside a timing loop would slow the kernels being timed)."""
    if not path:
        yield
        return
    with _gpu_lock_files(path) as (gate, f):
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)


def latency(ctx: Context, warmup: int, iters: int, cuda_graph: bool, log: Any) -> dict[str, Any]:
    """GPU time per inference (CUDA events around each enqueue), after warm-up."""
    cuda = ctx.cuda
    ctx.set_input(np.random.RandomState(0).rand(*ctx.shapes[ctx.inputs[0]]).astype(np.float32))
    launch = ctx.enqueue
    graph = None
    if cuda_graph:
        try:
            ctx.enqueue()  # TensorRT sets itself up lazily on the first enqueue: not capturable
            cuda.sync()
            cuda.begin_capture()
            try:
                ctx.enqueue()
            finally:
                graph = cuda.end_capture()
            exe = graph
            launch = lambda: cuda.launch_graph(exe)  # noqa: E731
        except (CudaError, RuntimeError) as err:
            cuda.clear_error()
            graph = None
            log.note(
                f"CUDA graph capture failed at batch {ctx.batch} ({err}); timed plain enqueues"
            )
    for _ in range(warmup):
        launch()
    cuda.sync()
    starts = [cuda.event() for _ in range(iters)]
    ends = [cuda.event() for _ in range(iters)]
    for ev0, ev1 in zip(starts, ends, strict=True):
        cuda.record(ev0)
        launch()
        cuda.record(ev1)
    ms = np.array([cuda.elapsed_ms(a, b) for a, b in zip(starts, ends, strict=True)])
    for ev in starts + ends:
        cuda.destroy_event(ev)
    if graph is not None:
        cuda.destroy_graph_exec(graph)
    return {
        "batch": ctx.batch,
        "iters": iters,
        "warmup": warmup,
        "cuda_graph": graph is not None,
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "min": float(ms.min()),
        "max": float(ms.max()),
        "throughput_ips": float(ctx.batch * 1000.0 / ms.mean()),
    }


def layer_profile(trt: Any, ctx: Context, iters: int) -> dict[str, Any]:
    """Mean time per engine layer over ``iters`` profiled runs (TensorRT's IProfiler)."""

    class Profiler(trt.IProfiler):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.total: dict[str, float] = {}
            self.order: list[str] = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            if layer_name not in self.total:
                self.total[layer_name] = 0.0
                self.order.append(layer_name)
            self.total[layer_name] += float(ms)

    prof = Profiler()
    ctx.ctx.profiler = prof
    for _ in range(max(iters, 1)):
        ctx.enqueue()
        ctx.cuda.sync()
        if not getattr(ctx.ctx, "enqueue_emits_profile", True):
            ctx.ctx.report_to_profiler()
    n = max(iters, 1)
    layers = [{"name": k, "ms": prof.total[k] / n} for k in prof.order]
    return {
        "batch": ctx.batch,
        "iters": n,
        "total_ms": sum(x["ms"] for x in layers),
        "layers": layers,
    }


def inspector_json(trt: Any, engine: Any, ctx: Context | None) -> dict[str, Any]:
    """IEngineInspector's detailed layer info for ``ctx``'s profile (strict=False: the
    inspector can emit raw control characters inside strings)."""
    inspector = engine.create_engine_inspector()
    if ctx is not None:
        inspector.execution_context = ctx.ctx
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return json.loads(text, strict=False)
