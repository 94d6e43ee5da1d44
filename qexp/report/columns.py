"""What a metric column means to a reader: which way is better, and how to print it."""

from __future__ import annotations

import math
import re

# The metric name without a backend scope ("torch/map50_95" -> "map50_95").
_SCOPE = re.compile(r"^[a-z0-9_]+/")

# Columns shown by default, in order, when present.
DEFAULT_METRICS = (
    "map50_95",
    "map50",
    "torch/map50_95",
    "latency_ms_p50",  # with p90/p50 beside it (SPREAD) where latency_ms_p90 was recorded
    "latency_ms_p50_b32",
    "throughput_ips_b1",
    "throughput_ips_b32",
    "engine_bytes",
    "build_s",
    "layers_int8",
    "layers_fp16",
    "layers_fp32",
    "reformat_layers",
    "align_map_delta",
)

# Metrics a delta against the baseline row is shown for (absolute difference).
DELTA_METRICS = ("map50_95", "map50", "torch/map50_95")
# Metrics a speedup against the baseline row is shown for (a ratio, >1 is faster).
SPEEDUP_METRICS = ("latency_ms_p50", "latency_ms_p50_b32", "throughput_ips_b32")

# p90/p50 of the latency. A quiet machine times an ONNX Runtime or TensorRT model within a few
# percent run to run; a p90 30% above the p50 means other work shared the cores while it was
# timed, and a speedup (or a Pareto point) read from that p50 is noise.
SPREAD = "p90/p50"
NOISY_SPREAD = 1.3
# metrics of the same batch-1 timing loop, as noisy as its p90/p50 says
TIMED_WITH_SPREAD = ("latency_ms_p50", "latency_ms_p90", "latency_ms_mean", "throughput_ips_b1")
# A label cell (a choice, a swept config value) is cut to this many characters.
LABEL_CHARS = 28


def base(metric: str) -> str:
    return _SCOPE.sub("", metric)


def higher_is_better(metric: str) -> bool | None:
    """True/False for metrics with a better direction; None where "best" means nothing."""
    m = base(metric)
    if m.startswith(("map", "throughput_", "align_cosine")):
        return True
    if m.startswith(("latency_", "engine_bytes", "align_max_abs_diff", "reformat_layers")):
        return False
    if m.endswith("_s"):  # build_s, calib_s, quantize_s, eval_s: time spent
        return False
    return None  # layer counts, align_map_delta (signed), ...


def fmt_value(metric: str, v: object) -> str:
    """A readable cell: 4 decimals for mAP, 2 for milliseconds, thousands for bytes."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if not isinstance(v, int | float):
        return str(v)
    m = base(metric)
    if m.startswith(("map", "align_cosine", "align_map_delta")):
        return f"{v:.4f}"
    if m.startswith("latency_ms"):
        return f"{v:.2f}"
    if m.startswith("throughput_"):
        return f"{v:.1f}"
    if m.endswith("_bytes") or m.startswith("layers_") or m == "reformat_layers":
        return f"{int(round(v)):,}"
    if m.endswith("_s"):
        return f"{v:.1f}"
    return f"{v:.4g}"


def fmt_delta(v: float) -> str:
    if v is None or math.isnan(v):
        return ""
    return f"{0.0 if abs(v) < 5e-5 else v:+.4f}"  # no "-0.0000"


def fmt_speedup(v: float) -> str:
    if v is None or math.isnan(v):
        return ""
    return f"x{v:.2f}"


def speedup(metric: str, ours: float, baseline: float) -> float:
    """>1 means faster than the baseline, for latencies and throughputs alike."""
    if not ours or not baseline or math.isnan(ours) or math.isnan(baseline):
        return math.nan
    return baseline / ours if base(metric).startswith("latency_") else ours / baseline


def fmt_spread(v: object) -> str:
    if v is None or not isinstance(v, int | float) or math.isnan(v):
        return ""
    return f"{v:.2f}" + (" ⚠" if v >= NOISY_SPREAD else "")


def noisy_note(n: int) -> str:
    rows = "1 row" if n == 1 else f"{n} rows"
    return (
        f"⚠ {rows} with p90/p50 ≥ {NOISY_SPREAD}: latency measured under load (other work "
        "shared the CPU); its speedup and its point on the Pareto plot are not reliable. "
        "Time again on an idle machine (or backend=tensorrt on a GPU)."
    )


def short_labels(values: list[object]) -> dict[object, str]:
    """Readable cells for long label values: a path becomes its shortest suffix that still
    tells the column's values apart (``weights/yolov8n.pt``), anything else over
    ``LABEL_CHARS`` keeps its start and end around an ellipsis."""
    texts = {v: str(v) for v in values if isinstance(v, str)}
    paths = [t for t in texts.values() if "/" in t]
    out: dict[object, str] = {}
    depth = 1
    while paths and depth < 8:  # the fewest trailing parts that keep the paths distinct
        tails = {"/".join(t.rstrip("/").split("/")[-depth:]) for t in paths}
        if len(tails) == len(set(paths)):
            break
        depth += 1
    for v, t in texts.items():
        short = "/".join(t.rstrip("/").split("/")[-depth:]) if "/" in t else t
        if short != t and not short.startswith("…"):
            short = "…/" + short
        if len(short) > LABEL_CHARS:
            keep = LABEL_CHARS - 1
            short = short[: keep // 2] + "…" + short[-(keep - keep // 2) :]
        out[v] = short
    return out
