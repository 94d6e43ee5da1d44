"""Layer sensitivities and rankings out of a sensitivity analysis (:mod:`qexp.quant.sensitivity`):
what ``ignore=sensitivity_topk`` keeps float and what the sensitivity report shows."""

from __future__ import annotations

from qexp.config.schema import Metric, Mode

METRICS = tuple(m.value for m in Metric)
MODES = tuple(m.value for m in Mode)


def scores(result: dict, mode: str, metric: str) -> dict[str, float]:
    """Layer -> sensitivity (larger: keeping the layer float helps more).

    single: the damage quantizing the layer alone does (mAP lost, MSE, 1 - cosine, -SQNR);
    all_but_one: what leaving it float recovers from full quantization (mAP gained, MSE
    removed, cosine gained, SQNR gained)."""
    if mode not in MODES or metric not in METRICS:
        raise ValueError(f"sensitivity mode {mode!r} / metric {metric!r}: {MODES} x {METRICS}")
    ref = result["reference"]
    out = {}
    for r in result["rows"]:
        if r["mode"] != mode:
            continue
        v = r[metric]
        if mode == "single":
            s = {"map": ref["float"]["map"] - v, "mse": v, "cosine": 1 - v, "sqnr": -v}[metric]
        else:
            q = ref["quantized"][metric]
            s = {"map": v - q, "mse": q - v, "cosine": v - q, "sqnr": v - q}[metric]
        out[r["layer"]] = float(s)
    if not out:
        raise ValueError(f"the sensitivity analysis has no {mode!r} rows")
    return out


def ranking(result: dict, mode: str, metric: str) -> list[str]:
    """Layers, most sensitive first (ties keep execution order)."""
    s = scores(result, mode, metric)
    order = {n: i for i, n in enumerate(result["layers"])}
    return sorted(s, key=lambda n: (-s[n], order[n]))
