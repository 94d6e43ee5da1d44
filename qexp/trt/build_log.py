"""Where a build's time goes, read from TensorRT's own log as it streams by.

TensorRT 8.6 has no progress monitor (IProgressMonitor came in 10.x), but its verbose log marks
every step of the tactic search: "Computing costs for <layer>", "Timing Runner: <layer>
(<runner type>)", "Tactic: 0x.. Time: ..", the optimisation profile being built, calibration,
engine generation. The time between two log lines is charged to the step the first one opened,
which gives seconds per build phase, per runner type (CaskConvolution, PointWiseV2, Myelin,
Reformat, CudnnConvolution, ...), per layer, and the longest silent gaps with the line that
preceded them. Standard library only (the worker imports it).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from typing import Any

_RUNNER = re.compile(r"Timing Runner: (.*) \(([^()]*)\)\s*$")
_PROFILE = re.compile(r"Constructing optimization profile number (\d+)")
_PHASES = (  # (substring of a log line, the phase it starts)
    ("Starting Calibration", "calibration"),
    ("Formats and tactics selection completed", "engine generation"),
    ("Engine generation completed", "finalize"),
)


class BuildTimeline:
    """Feed it every log line of one build (``line``); ``summary()`` says where time went."""

    def __init__(self, clock: Any = time.perf_counter, top: int = 12) -> None:
        self.clock = clock
        self.top = top
        self.t0 = self.last = clock()
        self.phase = "setup"
        self.runner = "-"
        self.layer = "-"
        self.phases: dict[str, float] = defaultdict(float)
        self.runners: dict[str, float] = defaultdict(float)
        self.layers: dict[str, float] = defaultdict(float)
        self.counts: Counter[str] = Counter()
        self.gaps: list[tuple[float, str]] = []
        self.prev_msg = ""
        self.layers_done = 0

    def line(self, msg: str, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        dt = now - self.last
        self.last = now
        self.phases[self.phase] += dt
        if self.runner != "-":
            self.runners[self.runner] += dt
        if self.layer != "-":
            self.layers[self.layer] += dt
        if dt > 0.5:
            self.gaps.append((dt, self.prev_msg[:200]))
            if len(self.gaps) > 4 * self.top:
                self.gaps = sorted(self.gaps, reverse=True)[: self.top]
        self.prev_msg = msg
        self._advance(msg)

    def _advance(self, msg: str) -> None:
        if msg.startswith("Tactic: ") and " Time: " in msg:
            self.counts["tactics_timed"] += 1
            self.counts[f"tactics:{self.runner}"] += 1
            return
        if "Computing costs for " in msg:
            # 8.6 often leaves the name empty here; the next "Timing Runner" line names it
            self.layer = msg.split("Computing costs for ", 1)[1].strip()[:160] or "?"
            self.runner = "-"
            self.layers_done += 1
            return
        if "Computing reformatting costs" in msg:
            self.layer = "(reformats)"
            self.runner = "-"
            return
        m = _RUNNER.search(msg)
        if m:
            self.runner = m.group(2).split("[", 1)[0]  # "Reformat[0x80000006]" -> "Reformat"
            if self.layer == "?":
                self.layer = m.group(1).strip()[:160]
            return
        if msg.startswith("Skipping tactic") or "has no valid tactics" in msg:
            self.counts["tactics_skipped"] += 1
            return
        m = _PROFILE.search(msg)
        if m:
            self.phase = f"tactics, profile {m.group(1)}"
            self.runner = self.layer = "-"
            return
        for needle, phase in _PHASES:
            if needle in msg:
                self.phase = phase
                self.runner = self.layer = "-"
                return
        if "Calibrat" in msg and self.phase == "setup":
            self.phase = "calibration"

    def summary(self) -> dict[str, Any]:
        total = self.last - self.t0

        def ranked(d: dict[str, float]) -> list[list[Any]]:
            items = sorted(d.items(), key=lambda kv: -kv[1])[: self.top]
            return [[k, round(v, 3)] for k, v in items]

        return {
            "total_s": round(total, 3),
            "phases_s": {k: round(v, 3) for k, v in self.phases.items()},
            "runners_s": ranked(self.runners),
            "layers_s": ranked(self.layers),
            "layers_tuned": self.layers_done,
            "tactics_timed": self.counts["tactics_timed"],
            "tactics_skipped": self.counts["tactics_skipped"],
            "tactics_by_runner": {
                k.split(":", 1)[1]: v for k, v in self.counts.items() if k.startswith("tactics:")
            },
            "gaps": [[round(s, 3), m] for s, m in sorted(self.gaps, reverse=True)[: self.top]],
        }
