"""The few CUDA runtime calls the worker needs, through ctypes on libcudart.

ctypes rather than cuda-python or pycuda: the staged TensorRT interpreter has only numpy, and
libcudart's C API is stable across CUDA 11-13 for everything used here (structs are avoided;
the device name is the first field of cudaDeviceProp in every version).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

_H2D, _D2H = 1, 2  # cudaMemcpyKind
_CAPTURE_THREAD_LOCAL = 1  # cudaStreamCaptureModeThreadLocal (as trtexec captures)
_LIB_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")


class CudaError(RuntimeError):
    """A CUDA runtime call failed (the message names the call and CUDA's error string)."""


def load_cudart() -> ctypes.CDLL:
    """libcudart from $QEXP_CUDART, else the loader's search path (LD_LIBRARY_PATH, ldconfig)."""
    names = [os.environ["QEXP_CUDART"]] if os.environ.get("QEXP_CUDART") else list(_LIB_NAMES)
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(str(e))
    raise CudaError("cannot load the CUDA runtime: " + "; ".join(errors))


class Cuda:
    """A handle on libcudart with one stream; every call checks its status."""

    def __init__(self, lib: ctypes.CDLL | None = None) -> None:
        self.lib = lib or load_cudart()
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p
        self.stream = ctypes.c_void_p()
        self._stream_created = False

    def check(self, status: int, call: str) -> None:
        if status != 0:
            msg = self.lib.cudaGetErrorString(status)
            text = msg.decode() if msg else "unknown error"
            raise CudaError(f"{call} failed: {text} (cudaError {status})")

    def device_count(self) -> int:
        n = ctypes.c_int(0)
        self.check(self.lib.cudaGetDeviceCount(ctypes.byref(n)), "cudaGetDeviceCount")
        return n.value

    def device_name(self, device: int = 0) -> str:
        # cudaDeviceProp grows between CUDA versions: a generous buffer, and only `name` is read
        buf = ctypes.create_string_buffer(16384)
        fn = (
            getattr(self.lib, "cudaGetDeviceProperties_v2", None)
            or self.lib.cudaGetDeviceProperties
        )
        self.check(fn(buf, ctypes.c_int(device)), "cudaGetDeviceProperties")
        return buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace")

    def device_uuid(self, device: int = 0) -> str:
        """The GPU's UUID as nvidia-smi prints it (cudaDeviceProp.uuid follows the 256-byte
        name in every CUDA version since 10)."""
        buf = ctypes.create_string_buffer(16384)
        fn = (
            getattr(self.lib, "cudaGetDeviceProperties_v2", None)
            or self.lib.cudaGetDeviceProperties
        )
        self.check(fn(buf, ctypes.c_int(device)), "cudaGetDeviceProperties")
        h = buf.raw[256:272].hex()
        return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def runtime_version(self) -> int:
        v = ctypes.c_int(0)
        self.check(self.lib.cudaRuntimeGetVersion(ctypes.byref(v)), "cudaRuntimeGetVersion")
        return v.value

    def ensure_stream(self) -> int:
        if not self._stream_created:
            self.check(self.lib.cudaStreamCreate(ctypes.byref(self.stream)), "cudaStreamCreate")
            self._stream_created = True
        return int(self.stream.value or 0)

    def malloc(self, nbytes: int) -> int:
        p = ctypes.c_void_p()
        self.check(
            self.lib.cudaMalloc(ctypes.byref(p), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc"
        )
        return int(p.value or 0)

    def free(self, ptr: int) -> None:
        self.check(self.lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def h2d(self, dst: int, src: np.ndarray) -> None:
        src = np.ascontiguousarray(src)
        self.check(
            self.lib.cudaMemcpyAsync(
                ctypes.c_void_p(dst),
                src.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_size_t(src.nbytes),
                _H2D,
                self.stream,
            ),
            "cudaMemcpyAsync(host->device)",
        )
        self.sync()  # src may be a temporary: it must outlive the copy

    def d2h(self, dst: np.ndarray, src: int) -> None:
        assert dst.flags.c_contiguous
        self.check(
            self.lib.cudaMemcpyAsync(
                dst.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_void_p(src),
                ctypes.c_size_t(dst.nbytes),
                _D2H,
                self.stream,
            ),
            "cudaMemcpyAsync(device->host)",
        )
        self.sync()

    def sync(self) -> None:
        self.check(self.lib.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def event(self) -> ctypes.c_void_p:
        e = ctypes.c_void_p()
        self.check(self.lib.cudaEventCreate(ctypes.byref(e)), "cudaEventCreate")
        return e

    def record(self, event: ctypes.c_void_p) -> None:
        self.check(self.lib.cudaEventRecord(event, self.stream), "cudaEventRecord")

    def elapsed_ms(self, start: ctypes.c_void_p, end: ctypes.c_void_p) -> float:
        ms = ctypes.c_float()
        self.check(self.lib.cudaEventSynchronize(end), "cudaEventSynchronize")
        self.check(
            self.lib.cudaEventElapsedTime(ctypes.byref(ms), start, end), "cudaEventElapsedTime"
        )
        return float(ms.value)

    def destroy_event(self, event: ctypes.c_void_p) -> None:
        self.check(self.lib.cudaEventDestroy(event), "cudaEventDestroy")

    # CUDA graphs: capture one enqueue, then launch the instantiated graph
    def begin_capture(self) -> None:
        self.check(
            self.lib.cudaStreamBeginCapture(self.stream, _CAPTURE_THREAD_LOCAL),
            "cudaStreamBeginCapture",
        )

    def end_capture(self) -> ctypes.c_void_p:
        graph = ctypes.c_void_p()
        self.check(
            self.lib.cudaStreamEndCapture(self.stream, ctypes.byref(graph)), "cudaStreamEndCapture"
        )
        exe = ctypes.c_void_p()
        # ...WithFlags has one signature from CUDA 11.4 through 13, unlike cudaGraphInstantiate
        self.check(
            self.lib.cudaGraphInstantiateWithFlags(ctypes.byref(exe), graph, ctypes.c_ulonglong(0)),
            "cudaGraphInstantiateWithFlags",
        )
        self.check(self.lib.cudaGraphDestroy(graph), "cudaGraphDestroy")
        return exe

    def launch_graph(self, exe: ctypes.c_void_p) -> None:
        self.check(self.lib.cudaGraphLaunch(exe, self.stream), "cudaGraphLaunch")

    def destroy_graph_exec(self, exe: ctypes.c_void_p) -> None:
        self.check(self.lib.cudaGraphExecDestroy(exe), "cudaGraphExecDestroy")

    def clear_error(self) -> None:
        """Reset the sticky-free last error after a failed (recoverable) call."""
        self.lib.cudaGetLastError()
