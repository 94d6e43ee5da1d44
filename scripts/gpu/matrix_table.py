"""Markdown table of the architecture matrix (conf/experiment/arch_matrix.yaml) from its records.

    python3 scripts/gpu/matrix_table.py outputs/gpu [--md out.md]

One row per architecture: did its Q/DQ graph pass the pre-build check (and what was dropped),
Q/DQ build seconds, reformat / fp16 / INT8 layers, and batch-32 throughput vs its own fp16
engine; jobs that did not finish are listed with their error's first line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def records(root: Path, experiment: str = "arch_matrix") -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("result.json")):
        r = json.loads(p.read_text())
        if r.get("experiment") != experiment or r["choices"].get("backend") != "tensorrt":
            continue
        key = r.get("config_hash") or str(p)
        if r["status"] == "FINISHED" or key not in latest:
            latest[key] = r
    return list(latest.values())


def _int(v: Any) -> str:
    return "" if v is None else str(int(v))


def arch(r: dict[str, Any]) -> str:
    return Path(str(r["config"]["model"]["weights"])).stem


def table(rows: list[dict[str, Any]]) -> str:
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(arch(r), {})[r["choices"]["quantizer"]] = r
    out = [
        "| architecture | Q/DQ pairs | pre-build check | dropped (float) | check s | Q/DQ build s "
        "| fp16 build s | reformats Q/DQ / fp16 | fp16 layers in Q/DQ | INT8 layers "
        "| fp16 img/s b32 | Q/DQ img/s b32 | × fp16 |",
        "|---|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    notes = []
    for name in sorted(by):
        q, f = by[name].get("ptq_trt"), by[name].get("fp16")
        for r in (q, f):
            if r is not None and r["status"] != "FINISHED":
                why = (r.get("error") or r.get("reason") or "").strip().splitlines()
                notes.append(f"- {name} {r['choices']['quantizer']}: {r['status']}: "
                             f"{why[0][:300] if why else ''}")  # fmt: skip
        qm = q["metrics"] if q and q["status"] == "FINISHED" else {}
        fm = f["metrics"] if f and f["status"] == "FINISHED" else {}
        pre = (q or {}).get("info", {}).get("precheck", {})
        ratio = (qm.get("throughput_ips_b32") or 0) / fm["throughput_ips_b32"] if (
            fm.get("throughput_ips_b32") and qm.get("throughput_ips_b32")) else None  # fmt: skip
        cells = [
            name, pre.get("pairs", ""),
            "" if not pre else ("pass" if pre.get("accepted") else "refused"),
            ", ".join(pre.get("dropped", [])) or ("none" if pre else ""),
            f"{pre['seconds']:.0f}" if pre.get("seconds") is not None else "",
            f"{qm['build_s']:.0f}" if "build_s" in qm else "",
            f"{fm['build_s']:.0f}" if "build_s" in fm else "",
            f"{_int(qm.get('reformat_layers'))} / {_int(fm.get('reformat_layers'))}",
            _int(qm.get("layers_fp16")), _int(qm.get("layers_int8")),
            f"{fm['throughput_ips_b32']:.0f}" if "throughput_ips_b32" in fm else "",
            f"{qm['throughput_ips_b32']:.0f}" if "throughput_ips_b32" in qm else "",
            f"{ratio:.2f}" if ratio else "",
        ]  # fmt: skip
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(out + ([""] + notes if notes else []))


def alone_vs_pool(pool: list[dict[str, Any]], alone: list[dict[str, Any]]) -> str:
    """Engines of the matrix rebuilt alone (scripts/gpu/alone.sh): build seconds and batch-32
    throughput, built beside the pool's other builds vs alone on the GPU."""
    twins = {(arch(r), r["choices"]["quantizer"]): r for r in pool if r["status"] == "FINISHED"}
    out = ["| engine | build s in the pool | build s alone | img/s b32 pool | img/s b32 alone "
           "| pool / alone |", "|---|--:|--:|--:|--:|--:|"]  # fmt: skip
    for r in alone:
        t = twins.get((arch(r), r["choices"]["quantizer"]))
        if r["status"] != "FINISHED" or t is None:
            continue
        a, m = r["metrics"], t["metrics"]
        out.append(f"| {arch(r)} {r['choices']['quantizer']} | {m['build_s']:.0f} | "
                   f"{a['build_s']:.0f} | {m['throughput_ips_b32']:.0f} | "
                   f"{a['throughput_ips_b32']:.0f} | "
                   f"{m['throughput_ips_b32'] / a['throughput_ips_b32']:.3f} |")  # fmt: skip
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--md", type=Path)
    a = ap.parse_args()
    pool = records(a.root)
    text = table(pool)
    alone = records(a.root, "arch_alone")
    if alone:
        text += "\n\nBuilt alone vs in the pool:\n\n" + alone_vs_pool(pool, alone)
    print(text)
    if a.md:
        a.md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
