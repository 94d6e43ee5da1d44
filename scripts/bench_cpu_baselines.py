"""fp32 CPU baselines: mAP (torch and ONNX Runtime) and ORT latency for yolov8n and yolov5n.

Runs real qexp jobs (model x backend=onnxruntime, quantizer=none, align on, so each job scores
the torch module and its ONNX on the same batches) and prints a markdown table with the
machine and library versions. Usage:

    QEXP_ASSETS=../shared/assets .venv/bin/python scripts/bench_cpu_baselines.py \
        [--models yolov8n yolov5n] [--data coco_val] [--threads 0] [--iters 50] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["yolov8n", "yolov5n"])
    ap.add_argument("--data", default="coco_val")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="outputs dir (default: a temp dir)")
    args = ap.parse_args()

    os.environ.setdefault("QEXP_ASSETS", str(ROOT.parent / "shared" / "assets"))
    from qexp import offline

    offline.setup()
    from hydra import compose, initialize_config_dir

    from qexp.config_store import register_configs
    from qexp.environment import versions
    from qexp.runner import JobSpec, run_job

    register_configs()
    out = args.out or Path(tempfile.mkdtemp(prefix="qexp-bench-"))
    rows = []
    for model in args.models:
        overrides = [
            f"model={model}",
            f"data={args.data}",
            f"model.imgsz={args.imgsz}",
            "quantizer=none",
            "backend=onnxruntime",
            "backend.align=true",
            f"backend.threads={args.threads}",
            f"backend.warmup={args.warmup}",
            f"backend.iters={args.iters}",
            "tracking=none",
            "resume=false",
            f"paths.output_dir={out}",
        ]
        if args.max_images:
            overrides.append(f"data.max_images={args.max_images}")
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        t = time.perf_counter()
        rec = run_job(cfg, JobSpec(job_dir=out / "runs" / model, choices={"model": model}))
        if rec.status != "FINISHED":
            print(f"{model}: {rec.status} {rec.reason or rec.error}", file=sys.stderr)
            return 1
        m = rec.metrics
        rows.append((model, m, rec.info, time.perf_counter() - t))

    v = versions()
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPU cores visible; python {v.get('python')}")
    print(
        "versions: "
        + ", ".join(
            f"{k} {v[k]}" for k in ("torch", "ultralytics", "onnx", "onnxruntime") if k in v
        )
    )
    print(
        f"data: {args.data} ({rows[0][2].get('eval_images_onnxruntime')} images), imgsz {args.imgsz} square, batch 1"
    )
    print(f"ORT threads: {args.threads or 'default'}, warm-up {args.warmup}, timed {args.iters}\n")
    print(
        "| model | mAP50-95 torch | mAP50 torch | mAP50-95 ORT | mAP50 ORT | ORT p50 ms | ORT p90 ms "
        "| raw max abs diff | raw cosine | job s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model, m, _, secs in rows:
        print(
            f"| {model} | {m['torch/map50_95']:.4f} | {m['torch/map50']:.4f} | {m['map50_95']:.4f} "
            f"| {m['map50']:.4f} | {m['latency_ms_p50']:.1f} | {m['latency_ms_p90']:.1f} "
            f"| {m['align_max_abs_diff']:.2e} | {m['align_cosine']:.9f} | {secs:.0f} |"
        )
    print(f"\nrecords under {out}/runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
