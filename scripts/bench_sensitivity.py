"""Partial quantization from every ranking of the sensitivity analysis, evaluated on the eval set.

`qexp ... ignore=sensitivity_topk` ranks by one ``ignore.metric`` in one ``ignore.mode``; this
script evaluates every (mode, metric, k) on the cached analysis of the given config, with the
torch fake-quant model, and prints one table.

    OMP_NUM_THREADS=1 python scripts/bench_sensitivity.py experiment=sensitivity \\
        --modes single,all_but_one --metrics map,mse,cosine,sqnr --ks 3,5
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from qexp import offline

offline.setup()

from hydra import compose, initialize_config_dir  # noqa: E402

from qexp.config_store import register_configs  # noqa: E402
from qexp.data import load_eval_data  # noqa: E402
from qexp.eval.evaluator import evaluate  # noqa: E402
from qexp.job import Job  # noqa: E402
from qexp.quant.sensitivity import cached_analysis, ranking  # noqa: E402
from qexp.quant.steps import calibrate, prepare_model, set_ranges  # noqa: E402
from qexp.registry import MODEL_FAMILIES  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "overrides", nargs="*", help="qexp config overrides (as on the qexp command line)"
    )
    ap.add_argument("--modes", default="single,all_but_one")
    ap.add_argument("--metrics", default="map,mse,cosine,sqnr")
    ap.add_argument("--ks", default="3,5")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(args.overrides))
    tmp = Path(tempfile.mkdtemp(prefix="bench_sensitivity_"))
    job = Job(cfg=cfg, dir=tmp, cache_dir=Path(cfg.paths.cache_dir).resolve())
    det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    data = load_eval_data(cfg.data, job)
    result, where = cached_analysis(job, det, data, job.settings.ignore.images)
    imgsz = int(cfg.model.imgsz)
    fmodel, qmodel, plan = prepare_model(det.module, [], cfg.quantizer)
    stats, _, _ = calibrate(job, fmodel, data, imgsz, cfg.data.calib.num, int(cfg.observer.bins))

    def measure(ignored: list[str]) -> float:
        _, q, p = prepare_model(det.module, ignored, cfg.quantizer)
        set_ranges(q, p, stats, cfg.observer)
        return evaluate(det.predict_fn(q.eval()), det, data, imgsz)["map50_95"]

    rows = [{"mode": "-", "metric": "-", "k": 0, "layers": [], "map50_95": measure([])}]
    seen: dict[tuple, float] = {(): rows[0]["map50_95"]}
    for mode in args.modes.split(","):
        for metric in args.metrics.split(","):
            for k in (int(v) for v in args.ks.split(",")):
                top = ranking(result, mode, metric)[:k]
                key = tuple(sorted(top))
                t = time.perf_counter()
                if key not in seen:
                    seen[key] = measure(top)
                rows.append(
                    {"mode": mode, "metric": metric, "k": k, "layers": top, "map50_95": seen[key]}
                )
                print(f"{mode:12s} {metric:7s} k={k}: mAP50-95 {seen[key]:.4f} "
                      f"({time.perf_counter() - t:.0f} s) {top}", flush=True)  # fmt: skip
    print(f"\nanalysis: {where}\n")
    print("| mode | metric | k | mAP50-95 | Δ vs full PTQ | layers kept float |")
    print("|---|---|---|---|---|---|")
    base = rows[0]["map50_95"]
    for r in rows:
        print(f"| {r['mode']} | {r['metric']} | {r['k']} | {r['map50_95']:.4f} | "
              f"{(r['map50_95'] - base) * 100:+.2f} | {', '.join(r['layers'])} |")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
