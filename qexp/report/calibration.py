"""One tensor's calibration histogram and the clip each observer picks, from a job's artifact.

A calibrating quantizer (ptq, adaround, qat) writes the artifact ``calibration``
(``calibration.json``: every layer input's |x| histogram and each activation observer's clip,
computed at run time with the job's observer settings; :func:`qexp.quant.calibrate.
write_histograms`). The report only reads it: no calibration cache, no observer code, so it
works as well on records ingested from another machine. Jobs recorded before the artifact
existed have none; run them again to get the plot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qexp.report.load import artifact_path

ARTIFACT = "calibration"  # the record's artifact name (file calibration.json)
FILE = "calibration.json"


@dataclass(frozen=True)
class TensorHistogram:
    """One tensor's |x| histogram over ``[0, range]`` in equal bins."""

    hist: np.ndarray
    edges: np.ndarray
    amax: float  # max |x| seen


def tensor_clips(
    row: pd.Series, tensor: str
) -> tuple[TensorHistogram, dict[str, float], str] | None:
    """(histogram, {observer: amax}, layer name) for ``tensor`` (a layer name, or a part of
    one) as this job calibrated it; None when the job wrote no calibration artifact."""
    path = artifact_path(row, ARTIFACT) or artifact_path(row, FILE)
    if path is None:
        return None
    tensors = json.loads(path.read_text()).get("tensors") or {}
    name = tensor if tensor in tensors else next((n for n in tensors if tensor in n), None)
    if name is None:
        return None
    t = tensors[name]
    hist = np.zeros(int(t["bins"]), dtype=np.float64)
    hist[: len(t["hist"])] = t["hist"]
    edges = np.linspace(0.0, float(t["range"]), int(t["bins"]) + 1)
    amax = max(abs(float(t["min"])), abs(float(t["max"]))) if t["count"] else 0.0
    return TensorHistogram(hist, edges, amax), dict(t["clips"]), name
