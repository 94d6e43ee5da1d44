"""The table of scripts/gpu/bench_build.py: one row per variant, from its two job records.

    python3 scripts/gpu/bench_table.py BENCH_DIR [--md OUT.md]

Build columns come from the build-phase record (cold build: build_s, the worker's CPU seconds,
the phases and runner types that took longest, from build_profile.json); latency and throughput
from the measure-phase record (the same engine, alone on its GPU). Throughput is compared with
the opt-level-3 engines of shared/device/records-yolov8n-4xh100 (same machine kind, TensorRT
8.6.0): fp16 9771 img/s, trt_builtin minmax 12776 img/s at batch 32.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REF_B32 = {"fp16": 9770.75, "trt_builtin": 12776.10}  # img/s, opt level 3, batch 32


def records(d: Path) -> list[tuple[Path, dict]]:
    """(record dir, record) under ``d``, oldest first (paths from here: records come home)."""
    found = [(p.parent, json.loads(p.read_text())) for p in d.rglob("result.json")]
    return sorted(found, key=lambda pr: pr[1].get("finished_at") or "")


def profile(job: Path) -> dict:
    p = job / "artifacts" / "build_profile.json"
    return json.loads(p.read_text()) if p.exists() else {}


def fmt(x: float | None, nd: int = 1) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def rows(bench: Path) -> list[list[str]]:
    out = []
    for d in sorted(p for p in bench.iterdir() if p.is_dir()):
        builds, measured = records(d / "build"), records(d / "measure")
        m = measured[-1][1] if measured and len(builds) == 1 else None
        for i, (job, b) in enumerate(builds):
            name = d.name if len(builds) == 1 else f"{d.name} #{i + 1}"
            out.append(row(name, job, b, m))
    return out


def row(name: str, job: Path, b: dict, m: dict | None) -> list[str]:
    bm, mm = b.get("metrics", {}), (m or {}).get("metrics", {})
    prof = profile(job)
    phases = ", ".join(f"{k} {v:.0f}" for k, v in sorted(
        prof.get("phases_s", {}).items(), key=lambda kv: -kv[1])[:3])  # fmt: skip
    runners = ", ".join(f"{k} {v:.0f}" for k, v in prof.get("runners_s", [])[:3])
    ref = REF_B32.get(b["choices"].get("quantizer"))
    thr = mm.get("throughput_ips_b32")
    status = b["status"]
    if status == "FAILED":
        status += ": " + (b.get("error") or "").splitlines()[0][:60]
    return [
        name, status, fmt(bm.get("build_s")), fmt(bm.get("build_cpu_s")),
        str(prof.get("tactics_timed", "–")), phases or "–", runners or "–",
        fmt(mm.get("latency_ms_p50"), 3), fmt(mm.get("latency_ms_p90"), 3), fmt(thr, 0),
        fmt(thr / ref, 3) if thr and ref else "–",
        fmt(mm.get("reformat_layers"), 0), fmt(mm.get("map50_95"), 4),
    ]  # fmt: skip


HEAD = ["variant", "status", "build s", "cpu s", "tactics", "top phases (s)", "top runners (s)",
        "b1 p50 ms", "b1 p90 ms", "b32 img/s", "vs opt3", "reformats", "mAP50-95 (64 img)"]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("bench", type=Path)
    ap.add_argument("--md", type=Path)
    a = ap.parse_args()
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(a.bench)]
    text = "\n".join(lines)
    print(text)
    if a.md:
        a.md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
