"""One cache kind's real entry point, run in a process of its own by test_cache_kinds.py.

``python -m tests.unit.reliability.cache_builder KIND ENTRY LOG READY GO``: after the imports
it touches READY, waits for GO, then asks for the entry; each build appends a line to LOG and
takes a second, so processes that start together meet while one of them builds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch


def slow_build(log: Path) -> None:
    with open(log, "a") as f:
        f.write("built\n")
    time.sleep(1.0)


class StubData:
    """What the TensorRT staging reads of EvalData: batches() and calibration()."""

    def __init__(self, log: Path | None = None, n: int = 6):
        self.log, self.n = log, n
        self.calls = 0

    def _images(self, imgsz: int) -> np.ndarray:
        self.calls += 1
        if self.log is not None:
            slow_build(self.log)
        g = np.random.default_rng(0)
        return (g.integers(0, 256, (self.n, 3, imgsz, imgsz)) / 255.0).astype(np.float32)

    def batches(self, imgsz, batch, workers=0, rect=False):
        x = self._images(imgsz)
        return [x[i : i + batch] for i in range(0, len(x), batch)]

    def calibration(self, imgsz, num=None):
        return [x[None] for x in self._images(imgsz)[: num or self.n]]


def calib(entry: Path, log: Path | None) -> object:
    from qexp.quant.calibrate import cached_stats
    from qexp.quant.placement import quantizable
    from qexp.quant.steps import float_twin
    from tests.unit.quant.conftest import ImageData, TinyYolo, randomize_bn

    torch.manual_seed(0)
    model = float_twin(randomize_bn(TinyYolo()))
    layers, _ = quantizable(model)
    data = ImageData()

    def images():
        if log is not None:
            slow_build(log)
        return data.calibration(32, 3)

    stats, _ = cached_stats(entry, model, layers, images, bins=128)
    return {n: st.hist.tolist() for n, st in stats.items()}


def model(entry: Path, log: Path | None) -> object:
    from qexp.quant import model_cache

    found = model_cache.load(entry)
    if found is None:
        if log is not None:
            slow_build(log)
        state = {"w": torch.arange(12.0).reshape(3, 4)}
        model_cache.save(entry, state, {"epochs": [1, 2]})
        found = model_cache.load(entry)
        assert found is not None
    state, meta = found
    return {"w": state["w"].tolist(), "meta": meta}


def eval_images(entry: Path, log: Path | None) -> object:
    from qexp.backends import trt_stage

    path, index = trt_stage.eval_images(StubData(log), 16, 2, entry)
    return {"images": np.load(path).tolist(), "index": index}


def calib_images(entry: Path, log: Path | None) -> object:
    from qexp.backends import trt_stage

    out = trt_stage.calib_images(StubData(log), 16, 5, entry, chunk=2)
    return [np.load(p).tolist() for p in sorted(out.glob("calib_*.npy"))]


KINDS = {"calib": calib, "model": model, "eval_images": eval_images, "calib_images": calib_images}


if __name__ == "__main__":
    kind, entry, log, ready, go = sys.argv[1], *map(Path, sys.argv[2:6])
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    KINDS[kind](entry, log)
    print("ok")
