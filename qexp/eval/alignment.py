"""Raw-output agreement of two runs of one model on the same images (torch vs ONNX, ...)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Alignment:
    """Streams batches of two raw outputs; max |a - b|, mean |a - b| and the global cosine."""

    max_abs_diff: float = 0.0
    sum_abs_diff: float = 0.0
    dot: float = 0.0
    norm_a: float = 0.0
    norm_b: float = 0.0
    count: int = 0

    def update(self, a: np.ndarray, b: np.ndarray) -> None:
        if a.shape != b.shape:
            raise ValueError(f"alignment: output shapes differ: {a.shape} vs {b.shape}")
        a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        d = np.abs(a64 - b64)
        if d.size:
            self.max_abs_diff = max(self.max_abs_diff, float(d.max()))
        self.sum_abs_diff += float(d.sum())
        self.dot += float(a64 @ b64)
        self.norm_a += float(a64 @ a64)
        self.norm_b += float(b64 @ b64)
        self.count += d.size

    @property
    def cosine(self) -> float:
        den = math.sqrt(self.norm_a * self.norm_b)
        return self.dot / den if den else float("nan")

    @property
    def mean_abs_diff(self) -> float:
        return self.sum_abs_diff / self.count if self.count else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "cosine": self.cosine,
            "values": float(self.count),
        }
