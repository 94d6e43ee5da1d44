"""qexp's fp32 eval vs ``YOLO(weights).val()`` on the same coco_val images, side by side.

    QEXP_ASSETS=../shared/assets .venv/bin/python scripts/bench_cpu_eval.py [--reps 3] \\
        [--out docs/results/cpu-eval-speed.md] [--no-busy]

Starts its own busy process (one core spinning, so the load is reproducible), then times,
alternating, ``--reps`` times each, in a fresh process per run:

- ``ultralytics square b1``: ``YOLO(w).val(imgsz=640, batch=1, rect=False, device="cpu")``,
  the same letterboxed 640x640 inputs, one at a time, that qexp's default evaluates;
- ``ultralytics rect b16``: ``val()``'s own default batching (smaller rectangular inputs);
- ``qexp fp32``: one qexp job, ``quantizer=none backend=onnxruntime backend.align=false``;
  the eval of one model, which the target (<= 1.3x ultralytics square b1) refers to;
- ``qexp fp32 + alignment``: the default job, which also runs the torch module on every image
  and compares the two (two models evaluated).

Seconds are those of the call inside the process (``val()`` / ``run_job``: model load, data,
inference, NMS, COCO eval), after one untimed warm-up of each (ultralytics writes its label
cache, qexp its ONNX export cache). Prints a markdown table and writes it, with the machine,
the versions, the load and what else was running, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = Path(os.environ.get("QEXP_ASSETS", ROOT.parent / "shared" / "assets")).resolve() / (
    "weights/yolov8n-coco-from-ovint8.pt"
)
VARIANTS = {
    "ultralytics square b1": ("ultralytics", {"rect": False, "batch": 1}),
    "ultralytics rect b16": ("ultralytics", {"rect": True, "batch": 16}),
    "qexp fp32": ("qexp", {"align": False}),
    "qexp fp32 + alignment": ("qexp", {"align": True}),
}
BASELINE, TARGET = "ultralytics square b1", "qexp fp32"
# per-image latency of one model under each thread setting: (library, threads, setting)
THREAD_CONFIGS = [
    ("torch", 1, "OpenMP default wait"),
    ("torch", 2, "OpenMP default wait"),
    ("torch", 2, "OMP_WAIT_POLICY=PASSIVE"),
    ("onnxruntime", 1, "no spinning"),
    ("onnxruntime", 2, "spinning"),
    ("onnxruntime", 2, "no spinning"),
]


def child_ultralytics(tmp: Path, images: int | None, rect: bool, batch: int) -> dict:
    from tests.e2e.test_parity_ultralytics import ultralytics_val

    t = time.perf_counter()
    m = ultralytics_val(tmp, images, rect, batch)
    return {"seconds": time.perf_counter() - t, **m}


def child_qexp(tmp: Path, images: int | None, align: bool) -> dict:
    from hydra import compose, initialize_config_dir

    from qexp.config_store import register_configs
    from qexp.runner import JobSpec, run_job

    register_configs()
    overrides = [
        "quantizer=none", "backend=onnxruntime", f"backend.align={str(align).lower()}",
        "backend.warmup=0", "backend.iters=1", "tracking=none", "resume=false",
        f"paths.output_dir={tmp / 'out'}", f"paths.cache_dir={tmp / 'cache'}",
    ] + ([f"data.max_images={images}"] if images else [])  # fmt: skip
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    t = time.perf_counter()
    rec = run_job(cfg, JobSpec(job_dir=tmp / "out" / f"job-{time.time_ns()}", choices={}))
    secs = time.perf_counter() - t
    if rec.status != "FINISHED":
        raise RuntimeError(f"qexp job {rec.status}: {rec.error}")
    m = rec.metrics
    return {
        "seconds": secs, "eval_s": m["eval_s"], "map50_95": m["map50_95"], "map50": m["map50"],
        "threads": rec.info.get("threads"), "threads_from": rec.info.get("threads_from"),
    }  # fmt: skip


def child_latency(lib: str, threads: int, setting: str, onnx: str) -> dict:
    """Median ms of one 640x640 image through yolov8n, 10 timed after 2 untimed."""
    if setting == "OpenMP default wait":
        os.environ.pop("OMP_WAIT_POLICY", None)  # before torch loads libgomp
    import numpy as np
    import torch

    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    if lib == "torch":
        from qexp.models.ultralytics_family import load_module

        model = load_module(str(WEIGHTS)).eval()
        torch.set_num_threads(threads)

        def run() -> None:
            with torch.inference_mode():
                model(torch.from_numpy(x))
    else:
        import onnxruntime as ort

        from qexp.threads import ort_options

        so = ort_options(ort.SessionOptions(), threads, spin=setting == "spinning")
        sess = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}

        def run() -> None:
            sess.run(None, feed)

    for _ in range(2):
        run()
    ts = []
    for _ in range(10):
        t = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t)
    return {"ms": 1e3 * statistics.median(ts)}


def thread_table(tmp: Path, busy: bool, rounds: int) -> list[str]:
    """Rows of per-image ms per thread setting (median over ``rounds`` interleaved runs), alone
    and beside the busy process."""
    onnx = next((tmp / "cache").rglob("*_fp32_640_b1.onnx"))
    res: dict[tuple, dict[bool, list[float]]] = {c: {False: [], True: []} for c in THREAD_CONFIGS}
    for with_busy in (False, True) if busy else (False,):
        spinner = (
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) if with_busy else None
        )
        try:
            for _ in range(rounds):
                for c in THREAD_CONFIGS:
                    args = ["--latency", c[0], str(c[1]), c[2], str(onnx)]
                    res[c][with_busy].append(run_child("latency", tmp, None, args)["ms"])
        finally:
            if spinner is not None:
                spinner.kill()
    rows = ["| library | threads | setting | ms / image, alone | ms / image, beside 1 busy process |",
            "|---|---:|---|---:|---:|"]  # fmt: skip
    for (lib, n, setting), r in res.items():
        alone = f"{statistics.median(r[False]):.0f}"
        beside = f"{statistics.median(r[True]):.0f}" if r[True] else "-"
        rows.append(f"| {lib} | {n} | {setting} | {alone} | {beside} |")
    return rows


def run_child(name: str, tmp: Path, images: int | None, extra: list[str] | None = None) -> dict:
    """One measurement in a fresh interpreter (nothing warm but the on-disk caches)."""
    cmd = [sys.executable, __file__, "--child", name, "--tmp", str(tmp)]
    cmd += (["--images", str(images)] if images else []) + (extra or [])
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def busy_others() -> list[str]:
    """Processes other than this benchmark's using > 10% CPU (what else was running)."""
    mine = {os.getpid()}
    out = subprocess.run(
        ["ps", "-eo", "pid,ppid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True
    ).stdout.splitlines()[1:]
    rows = []
    for line in out:
        pid, ppid, cpu, args = line.split(None, 3)
        if float(cpu) > 10 and int(pid) not in mine and int(ppid) not in mine:
            rows.append(f"{float(cpu):.0f}% {args[:100]}")
    return rows


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "cpu-eval-speed.md")
    ap.add_argument("--no-busy", action="store_true", help="do not start the busy process")
    ap.add_argument("--images", type=int, default=None, help="first N images (a smoke test)")
    ap.add_argument("--no-threads-table", action="store_true", help="skip the per-setting table")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--latency", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()

    os.environ.setdefault("QEXP_ASSETS", str(ROOT.parent / "shared" / "assets"))
    if a.child:
        sys.path.insert(0, str(ROOT))
        from qexp import offline

        offline.setup()
        if a.child == "latency":
            lib, n, setting, onnx = a.latency
            print(json.dumps(child_latency(lib, int(n), setting, onnx)))
            return 0
        kind, kw = VARIANTS[a.child]
        fn = child_ultralytics if kind == "ultralytics" else child_qexp
        print(json.dumps(fn(a.tmp, a.images, **kw)))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="qexp-bench-eval-"))
    busy = None if a.no_busy else subprocess.Popen([sys.executable, "-c", "while True: pass"])
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_before = os.getloadavg()
    others: dict[str, None] = {}  # every process seen above 10% CPU, in order
    runs: dict[str, list[dict]] = {v: [] for v in a.variants}
    try:
        time.sleep(1)
        print("warm-up (untimed): ultralytics label cache, qexp ONNX export cache", flush=True)
        for v in {VARIANTS[v][0]: v for v in a.variants}.values():
            run_child(v, tmp, a.images)
        for rep in range(a.reps):
            order = a.variants[rep % len(a.variants) :] + a.variants[: rep % len(a.variants)]
            for v in order:
                r = run_child(v, tmp, a.images)
                runs[v].append(r)
                print(f"rep {rep + 1} {v}: {r['seconds']:.1f} s (mAP50-95 {r['map50_95']:.4f})")
                others.update(dict.fromkeys(busy_others()))
    finally:
        if busy is not None:
            busy.kill()
    load_after = os.getloadavg()
    threads_rows = [] if a.no_threads_table else thread_table(tmp, not a.no_busy, a.reps)

    med = {v: statistics.median(r["seconds"] for r in rs) for v, rs in runs.items()}
    base = med.get(BASELINE)
    lines = [
        "| run | median s | runs (s) | / ultralytics square b1 | mAP50-95 | notes |",
        "|---|---:|---|---:|---:|---|",
    ]
    for v, rs in runs.items():
        ratio = f"{med[v] / base:.2f}x" if base else "-"
        note = ""
        if "eval_s" in rs[0]:
            note = (
                f"eval loop {statistics.median(r['eval_s'] for r in rs):.1f} s; "
                f"threads {rs[0]['threads']} ({rs[0]['threads_from']})"
            )
        secs = ", ".join(f"{r['seconds']:.1f}" for r in rs)
        lines.append(
            f"| {v} | {med[v]:.1f} | {secs} | {ratio} | {rs[0]['map50_95']:.4f} | {note} |"
        )
    table = "\n".join(lines)
    from qexp.environment import versions

    ver = versions()
    import numpy

    verdict = ""
    if base and TARGET in med:
        r = med[TARGET] / base
        verdict = (
            f"**Target** (qexp fp32 eval of one model <= 1.3x `YOLO(...).val()` on the same "
            f"inputs): {r:.2f}x, {'met' if r <= 1.3 else 'NOT met'}."
        )
    cmd = " ".join(["scripts/bench_cpu_eval.py", *sys.argv[1:]])
    doc = f"""# CPU eval speed: qexp vs `YOLO(...).val()` (issue 12)

{verdict}

{table}

- {a.images or 206} coco_val images, yolov8n (`weights/yolov8n-coco-from-ovint8.pt`), imgsz 640; medians of
  {a.reps} alternating runs, each in a fresh process, after an untimed warm-up of each side.
- Seconds: the `val()` call / the `run_job` call (model load, data, inference, NMS, COCO eval;
  qexp also writes its record and times one latency iteration). Not counted: interpreter start
  and imports, qexp's ONNX export (cached by the warm-up; `val()` exports nothing).
- Load: {"one busy process started by the benchmark (`python -c 'while True: pass'`)" if busy else "no busy process of the benchmark's own"};
  load average {load_before[0]:.2f} before, {load_after[0]:.2f} after. Other processes seen
  above 10% CPU (`ps`, after each timed run): {"; ".join(others) or "none"}.
- Machine: {cpu_name()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable);
  python {ver.get("python")}, torch {ver.get("torch")}, ultralytics {ver.get("ultralytics")},
  onnxruntime {ver.get("onnxruntime")}, numpy {numpy.__version__}; {started}.
- Command: `{cmd}`

## Thread settings, one model, one image at a time

yolov8n fp32 at 640x640: in each run, the median of 10 images after 2 untimed, in a fresh
process; the table holds the median of {a.reps} interleaved runs. The busy process runs for
the right column only. qexp's defaults: torch with
`OMP_WAIT_POLICY=PASSIVE` (set when qexp is imported) and ONNX Runtime without spinning, both on
the job's share of the cores (2 here).

{chr(10).join(threads_rows) or "(skipped)"}
"""
    print("\n" + table + "\n\n" + verdict)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(doc)
    print(f"written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
