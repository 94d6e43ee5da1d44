"""Where a build's time goes, read from a real TensorRT 8.6 build log (recorded fixture)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from qexp.trt.build_log import BuildTimeline

FIXTURE = Path(__file__).parent / "fixtures" / "build_log_yolov8n_fp16_o2_excerpt.txt.gz"


def _replay() -> tuple[BuildTimeline, list[tuple[float, str]]]:
    lines: list[tuple[float, str]] = []
    stamp = re.compile(r"^(\d+\.\d{4}) (\d) (.*)$")
    with gzip.open(FIXTURE, "rt") as f:
        for raw in f:
            m = stamp.match(raw.rstrip("\n"))
            if m:
                lines.append((float(m.group(1)), m.group(3)))
            else:  # a message that spans lines (recorded before the worker escaped them)
                t, msg = lines[-1]
                lines[-1] = (t, msg + "\n" + raw.rstrip("\n"))
    tl = BuildTimeline(clock=lambda: 0.0)
    for t, msg in lines:
        tl.line(msg, now=t)
    return tl, lines


def test_every_second_is_charged_to_a_phase():
    tl, lines = _replay()
    s = tl.summary()
    assert s["total_s"] == round(lines[-1][0], 3)
    assert abs(sum(s["phases_s"].values()) - s["total_s"]) < 1e-2
    assert set(s["phases_s"]) == {"setup", "tactics, profile 0"}
    # the builder kernel library loads before anything is timed (~10 s on the H100)
    assert s["phases_s"]["setup"] > 5


def test_tactics_and_runner_types_are_counted_from_the_log():
    tl, lines = _replay()
    s = tl.summary()
    timed = sum(1 for _, m in lines if re.match(r"Tactic: 0x[0-9a-f]+ Time: ", m))
    assert s["tactics_timed"] == timed > 500
    runners = dict(s["runners_s"])
    assert {"Reformat", "CaskConvolution", "PointWiseV2"} <= set(runners)
    assert sum(s["tactics_by_runner"].values()) == timed
    assert sum(runners.values()) <= s["total_s"]


def test_layers_are_named_from_their_timing_runner():
    tl, _ = _replay()
    names = [name for name, _ in tl.summary()["layers_s"]]
    # "?": layers TensorRT costs without timing anything (constants, shape layers)
    assert names[0] == "/model.0/conv/Conv" and "(reformats)" in names
