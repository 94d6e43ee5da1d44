"""TensorRT's own INT8 calibrators (route trt_builtin), fed from preprocessed .npy batches.

The client writes the calibration images once, already letterboxed like eval images; each
get_batch() copies the next batch to one device buffer. The calibration cache makes a re-build
with the same images skip the calibration pass entirely (TensorRT reads the scales back).
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from qexp.trt import compat
from qexp.trt.cuda import Cuda


def as_float32(images: np.ndarray) -> np.ndarray:
    """uint8 images are 0..255 (the client stores exact letterboxed pixels); floats are 0..1."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) * np.float32(1.0 / 255.0)
    return images.astype(np.float32, copy=False)


def iter_batches(calib_dir: str, batch: int) -> Iterator[np.ndarray]:
    """Fixed-size batches from every *.npy under calib_dir (sorted); a short tail is dropped."""
    files = sorted(glob.glob(os.path.join(calib_dir, "*.npy")))
    if not files:
        raise FileNotFoundError(f"no calibration batches (*.npy) in {calib_dir}")
    pending: list[np.ndarray] = []
    have = 0
    for path in files:
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 4:
            raise ValueError(f"{path}: calibration batch must be (B, C, H, W), got {arr.shape}")
        for i in range(arr.shape[0]):
            pending.append(np.asarray(arr[i : i + 1]))
            have += 1
            if have == batch:
                yield as_float32(np.concatenate(pending))
                pending, have = [], 0


def make_calibrator(
    trt: Any,
    kind: str,
    calib_dir: str,
    batch: int,
    input_shape: tuple[int, ...],
    cache_path: str | None,
    cuda: Cuda,
    log: Any,
) -> Any:
    """An instance of TensorRT's calibrator class ``kind`` reading batches of ``batch`` images."""
    base = compat.calibrator_base(trt, kind)
    nbytes = int(np.prod((batch, *input_shape[1:]))) * 4

    class Calibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)  # type: ignore[misc]  # pybind trampolines need it called
            self.batches = iter_batches(calib_dir, batch)
            self.device = cuda.malloc(nbytes)
            self.count = 0
            self.t_first: float | None = None  # the calibration pass, for calib_s
            self.t_last: float | None = None

        def get_batch_size(self) -> int:
            # explicit-batch networks carry the batch in the shape; TensorRT wants 1 here
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            now = time.perf_counter()
            self.t_first = self.t_first or now
            self.t_last = now
            try:
                data = next(self.batches)
            except StopIteration:
                return None
            expect = (batch, *input_shape[1:])
            if tuple(data.shape) != expect:
                raise ValueError(f"calibration batch shape {data.shape} != network input {expect}")
            cuda.h2d(self.device, data)
            self.count += batch
            return [self.device] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            if cache_path and os.path.exists(cache_path):
                log.note(f"calibration cache {cache_path} reused (no calibration pass)")
                with open(cache_path, "rb") as f:
                    return f.read()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_path:
                tmp = cache_path + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(compat.host_bytes(cache))
                os.replace(tmp, cache_path)

        # IInt8LegacyCalibrator only: TensorRT's documented defaults
        def get_quantile(self) -> float:
            return 0.9999

        def get_regression_cutoff(self) -> float:
            return 1.0

        def read_histogram_cache(self, length: int) -> bytes | None:
            return None

        def write_histogram_cache(self, data: Any, length: int) -> None:
            return None

        def seconds(self) -> float:
            """Wall time from the first batch asked to the last (0 when the cache was used)."""
            return (self.t_last - self.t_first) if self.t_first and self.t_last else 0.0

        def free(self) -> None:
            if self.device:
                cuda.free(self.device)
                self.device = 0

    return Calibrator()
