"""Markdown table of a TensorRT sweep's records (result.json files under DIR).

    python scripts/gpu/results_table.py outputs/gpu

One row per FINISHED tensorrt job (the latest record per configuration), in the order
fp32, fp16, trt_builtin, ptq; INT8 batch-32 throughput as a ratio to the fp16 row.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ORDER = {"none": 0, "fp16": 1, "trt_builtin": 2, "ptq": 3, "ptq_dr": 4}


def label(r: dict[str, Any]) -> str:
    c, q = r["choices"], r["config"].get("quantizer", {})
    name = c["quantizer"]
    if name == "none":
        return "fp32"
    if name == "fp16":
        return "fp16"
    if name == "trt_builtin":
        return f"trt_builtin {c['calibrator']}"
    return f"{name} {c['observer']} {q.get('export')}"


def load(root: Path) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("result.json")):
        r = json.loads(p.read_text())
        if r["choices"].get("backend") != "tensorrt":
            continue
        key = r["config_hash"] or str(p)
        if r["status"] == "FINISHED" or key not in latest:
            latest[key] = r
    return sorted(
        latest.values(), key=lambda r: (ORDER.get(r["choices"]["quantizer"], 9), label(r))
    )


def fmt(v: Any, nd: int = 3) -> str:
    return "" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def table(rows: list[dict[str, Any]]) -> str:
    fp16 = next(
        (r["metrics"] for r in rows if label(r) == "fp16" and r["status"] == "FINISHED"), {}
    )
    head = ["row", "mAP50-95", "mAP50", "torch mAP50-95", "Δ vs torch", "mAP50-95 b32",
            "p50 b1 ms", "p90 b1 ms", "p90/p50 b1", "p50 b32 ms", "p90 b32 ms", "img/s b1",
            "img/s b32", "b32 vs fp16", "engine MB", "build s", "calib s", "GPU", "layers",
            "int8", "fp16", "fp32", "reformat"]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m = r["metrics"]
        if r["status"] != "FINISHED":
            why = (r.get("reason") or r.get("error") or "").splitlines()[0][:120]
            out.append(f"| {label(r)} | {r['status']}: {why} |" + " |" * (len(head) - 2))
            continue
        ratio = None
        if fp16.get("throughput_ips_b32") and m.get("throughput_ips_b32"):
            ratio = m["throughput_ips_b32"] / fp16["throughput_ips_b32"]
        spread = None
        if m.get("latency_ms_p50") and m.get("latency_ms_p90"):
            spread = m["latency_ms_p90"] / m["latency_ms_p50"]
        cells = [
            label(r), fmt(m.get("map50_95")), fmt(m.get("map50")), fmt(m.get("torch/map50_95")),
            fmt(m.get("align_map_delta"), 4), fmt(m.get("map50_95_b32")),
            fmt(m.get("latency_ms_p50")), fmt(m.get("latency_ms_p90")), fmt(spread, 2),
            fmt(m.get("latency_ms_p50_b32")), fmt(m.get("latency_ms_p90_b32")),
            fmt(m.get("throughput_ips_b1"), 0), fmt(m.get("throughput_ips_b32"), 0),
            fmt(ratio, 2), fmt(m.get("engine_bytes", 0) / 1e6, 2), fmt(m.get("build_s"), 1),
            fmt(m.get("calib_s"), 1), str((r.get("info", {}).get("gpu") or {}).get("index", "")),
        ] + [fmt(int(m[k])) if k in m else "" for k in
             ("layers_total", "layers_int8", "layers_fp16", "layers_fp32", "reformat_layers")]  # fmt: skip
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    a = ap.parse_args()
    rows = load(a.root)
    print(table(rows))
    first = next((r for r in rows if r["status"] == "FINISHED"), None)
    if first:
        t = first["info"].get("tensorrt", {})
        print(f"TensorRT {t.get('tensorrt')} on {t.get('gpu')}")


if __name__ == "__main__":
    main()
