"""Cost of calibrating one observer vs all four from one shared histogram pass, per device.

    .venv/bin/python scripts/bench_calibration.py model=yolov5n data.calib.num=128
    .venv/bin/python scripts/bench_calibration.py --device cpu cuda data.calib.num=128

Prints, for the composed model/data: the time to load the calibration images (decode and
letterbox, on the CPU), the calibration pass (forward + per-layer histograms) on each
``--device`` (``--repeat`` times: the first CUDA pass includes CUDA/cuDNN start-up), the range
computation of each observer, and the two totals the design promises to keep close: "one
observer" (pass + its ranges) vs "four observers" (one pass + four sets of ranges), next to the
naive cost of four separate passes. Calibration here never reads the cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OBSERVERS = ("minmax", "percentile", "mse", "entropy")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides (model=..., data.calib.num=...)")
    ap.add_argument("--one", default="entropy", help="the single observer to compare against")
    ap.add_argument(
        "--device", nargs="+", default=["cpu"], help="devices to time the pass on (cpu, cuda, ...)"
    )
    ap.add_argument("--repeat", type=int, default=1, help="passes per device")
    args = ap.parse_args(argv)

    from qexp import offline

    offline.setup()
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from qexp.config_store import register_configs
    from qexp.data import load_eval_data
    from qexp.device import describe, resolve_device
    from qexp.job import Job
    from qexp.quant.calibrate import collect_stats
    from qexp.quant.placement import quantizable
    from qexp.quant.steps import prepare_model, set_ranges
    from qexp.registry import MODEL_FAMILIES

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["quantizer=ptq", *args.overrides])
    tmp = Path(tempfile.mkdtemp(prefix="qexp-bench-"))
    job = Job(cfg=cfg, dir=tmp, cache_dir=tmp / "cache")
    imgsz, num = int(cfg.model.imgsz), int(cfg.data.calib.num)
    detector = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    data = load_eval_data(cfg.data, job)
    t = time.perf_counter()
    images = data.calibration(imgsz, num)
    load_s = time.perf_counter() - t
    fmodel, qmodel, plan = prepare_model(detector.module, [], cfg.quantizer)
    layers, _ = quantizable(fmodel)

    passes: list[tuple[str, float]] = []
    for name in args.device:
        device = resolve_device(name)
        for i in range(args.repeat):
            t = time.perf_counter()
            stats = collect_stats(fmodel, layers, images, int(cfg.observer.bins), device=device)
            passes.append((f"{describe(device)} #{i + 1}", time.perf_counter() - t))
    pass_s = passes[0][1]
    ranges_s = {}
    for name in OBSERVERS:
        ocfg = OmegaConf.merge(cfg.observer, {"act": name})
        t = time.perf_counter()
        set_ranges(qmodel, plan, stats, ocfg)
        ranges_s[name] = time.perf_counter() - t
    one = pass_s + ranges_s[args.one]
    four = pass_s + sum(ranges_s.values())
    print(
        f"model={cfg.model.name} imgsz={imgsz} calibration images={len(images)} "
        f"layers={len(layers)} bins={cfg.observer.bins} torch threads={torch.get_num_threads()}"
    )
    print(f"| step | seconds |\n|---|---:|\n| load {len(images)} images (CPU) | {load_s:.2f} |")
    for label, secs in passes:
        print(f"| calibration pass (forward + histograms), {label} | {secs:.2f} |")
    for name, s in ranges_s.items():
        print(f"| ranges: {name} | {s:.2f} |")
    print(f"| one observer ({args.one}): pass + ranges | {one:.2f} |")
    print(f"| four observers: one pass + four ranges | {four:.2f} |")
    print(f"| four separate calibrations (naive) | {4 * pass_s + sum(ranges_s.values()):.2f} |")
    print(f"ratio four/one = {four / one:.3f} (target <= 1.5)")
    return 0 if four / one <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
