"""Where a TensorRT engine build's time goes, and what each builder lever buys (GPU machine).

    python3 scripts/gpu/bench_build.py [--out DIR] [--per-gpu 2] [--timeout 480] [--only a,b]

Each variant is one real `qexp` job (yolov8n, 64 coco_val images, backend=tensorrt) with its own
output and cache dir, so every build starts cold: a fresh worker process, no timing cache file,
an empty CUDA JIT cache (unless the variant says otherwise). Two phases:
  1. build: variants run `--per-gpu` at a time on every GPU (a build is one CPU thread with the
     GPU mostly idle, so two share a GPU with little effect on the build time);
  2. measure: each finished variant again with its engine reused, one job per GPU, so latency
     and throughput are timed without another job on the GPU.
Then `python3 scripts/gpu/bench_table.py DIR` prints the table (build seconds, CPU seconds,
where the time went, b1/b32 latency and throughput against the opt-level-3 references).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

# name -> (qexp overrides, name of a variant that must finish first). The first session's
# variants (levels 0-3, eager loading, tactic sources, static batch) are kept in
# docs/results/tensorrt-build.md; these are the ones that session left open.
VARIANTS: dict[str, tuple[list[str], str | None]] = {
    # TensorRT's full search at level 2 (the default before format_filter)
    "o2_full": (["backend.opt_level=2", "backend.format_filter=null"], None),
    # the full level 3 (TensorRT's default) once the fp32 candidates are not timed
    "o3_nofp32": (["backend.opt_level=3"], None),
    "o1_nofp32": (["backend.opt_level=1"], None),
    # two builds of the same engine in one qexp process and one serving worker: the second
    # finds its tactics in the worker's in-memory timing cache
    "o2_nofp32_serve_x2": (
        ["-m", "backend.opt_level=2", "backend.persistent_worker=true", "seed=0,1"],
        None,
    ),
    # the first session's variants, kept runnable: --only o2_static_b1,...
    "o2_static_b1": (
        ["backend.opt_level=2", "backend.format_filter=null", "backend.batch_sizes=[1]"],
        "never",
    ),
}
COMMON = [
    "model=yolov8n", "data=coco_val", "data.max_images=64", "backend=tensorrt", "tracking=none",
    "quantizer=fp16", "backend.align=false", "backend.persistent_worker=false",
    "backend.timing_cache=null", "backend.build_profile=true", "experiment_name=trt_build_bench",
]  # fmt: skip


def gpus() -> list[str]:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    return [str(i) for i, ln in enumerate(out.splitlines()) if ln.startswith("GPU ")] or ["0"]


def command(name: str, out: Path, phase: str, timeout: int) -> list[str]:
    overrides, _ = VARIANTS[name]
    d = out / name
    resolved = [o.replace("@o2", str(out / "o2" / "cache" / "cuda_jit")) for o in overrides]
    extra = [f"backend.timeout_s={timeout}", "backend.reuse_engine=false"]
    if phase == "measure":
        extra = ["backend.reuse_engine=true", "resume=false", "backend.build_profile=false"]
    flags = [o for o in resolved if o.startswith("-")]  # Hydra wants -m before overrides
    resolved = [o for o in resolved if not o.startswith("-")]
    return [sys.executable, "-m", "qexp.cli", *flags, *COMMON, *resolved, *extra,
            f"paths.output_dir={d}/{phase}", f"paths.cache_dir={d}/cache"]  # fmt: skip


def finished(out: Path, name: str, phase: str) -> bool:
    return any(
        '"status": "FINISHED"' in p.read_text() for p in (out / name / phase).rglob("result.json")
    )


def run_phase(names: list[str], out: Path, phase: str, per_gpu: int, timeout: int) -> None:
    slots = [g for g in gpus() for _ in range(per_gpu)]
    done: set[str] = set()
    todo = list(names)
    lock = threading.Lock()

    def worker(gpu: str) -> None:
        while True:
            with lock:
                ready = [n for n in todo if VARIANTS[n][1] in (None, "never", *done)]
                if not ready:
                    if not todo:
                        return
                    name = None
                else:
                    name = ready[0]
                    todo.remove(name)
            if name is None:
                time.sleep(2)
                continue
            log = out / name / f"{phase}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            # the host's cores shared by the jobs running at once (torch's calibration pass)
            threads = str(max(1, (os.cpu_count() or 8) // len(slots)))
            env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpu, OMP_NUM_THREADS=threads)
            t = time.time()
            print(f"[{time.strftime('%H:%M:%S')}] {phase} {name} on GPU {gpu}", flush=True)
            with open(log, "w") as f:
                rc = subprocess.run(
                    command(name, out, phase, timeout), env=env, stdout=f, stderr=subprocess.STDOUT
                ).returncode
            print(f"[{time.strftime('%H:%M:%S')}] {phase} {name}: rc={rc}, "
                  f"{time.time() - t:.0f} s", flush=True)  # fmt: skip
            with lock:
                done.add(name)

    threads = [threading.Thread(target=worker, args=(g,)) for g in slots]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_out = Path(os.environ.get("QEXP_OUT", Path.home() / "qexp-out")) / "bench"
    ap.add_argument("--out", type=Path, default=default_out)
    ap.add_argument("--per-gpu", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=480, help="seconds per build before giving up")
    ap.add_argument("--only", default="", help="comma-separated variant names")
    ap.add_argument("--phases", default="build,measure")
    a = ap.parse_args()
    names = [
        n
        for n in VARIANTS
        if (n in a.only.split(",")) or (not a.only and VARIANTS[n][1] != "never")
    ]
    a.out.mkdir(parents=True, exist_ok=True)
    for phase in a.phases.split(","):
        if phase == "measure":  # a build that failed or timed out is not rebuilt here
            names = [n for n in names if finished(a.out, n, "build") and "-m" not in VARIANTS[n][0]]
        run_phase(names, a.out, phase, a.per_gpu if phase == "build" else 1, a.timeout)
    print("bench done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
