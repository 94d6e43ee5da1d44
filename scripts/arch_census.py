"""The placement census of every architecture of the matrix (qexp/models/architectures.py).

    .venv/bin/python scripts/arch_census.py --out /tmp/arch_census           # all, ptq_trt
    .venv/bin/python scripts/arch_census.py --archs yolo11n,yolo26n --imgsz 320
    .venv/bin/python scripts/arch_census.py --quantizer ptq                   # no TRT rules
    .venv/bin/python scripts/arch_census.py --archs yolo12n 'ignore.patterns=[*attn.pe.conv]'

For each architecture: the model (an ultralytics yaml with ``informative_random`` weights,
saved as ``OUT/weights/<arch>.pt`` so a run elsewhere loads the same model; qexp's classic
yolov5n with its real weights), PTQ calibrated on 2 coco128 images, its Q/DQ ONNX written to
``OUT/onnx/<arch>_<quantizer>_<imgsz>_qdq.onnx`` (the graphs to give TensorRT's pre-build
check), then the census of that graph (activation and weight Q/DQ, convs left float, the
layers the TensorRT rules left float and their pattern) and its ONNX Runtime parity with the
torch fake-quant twin on 2 coco_val images (cosine and median absolute difference of the raw
outputs; an NMS-free head's before its top-k). Prints the markdown table; writes ``OUT/census.json``.
Everything runs on one CPU thread (torch and ORT), so the numbers are reproducible.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("arch", "head", "act_qdq", "weight_qdq", "convs", "float_convs", "matmuls", "adds (Q/DQ)",
           "float_by_rule", "patterns", "ort_cosine", "ort_median_abs")  # fmt: skip


def _random_weights(weights: str, out: Path, name: str) -> str:
    """``weights`` (an architecture yaml) with informative random weights, saved as a .pt."""
    from ultralytics import YOLO

    from qexp.models.random_init import informative_random

    path = out / "weights" / f"{name}.pt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        y = YOLO(weights)
        informative_random(y.model)
        y.save(str(path))
    return str(path)


def build(
    arch: str, out: Path, imgsz: int, quantizer: str = "ptq_trt", extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Quantize and export one architecture; its census row plus the objects behind it
    (``deploy``, ``detector``, ``data``, ``onnx``) for callers that check more."""
    import torch
    from hydra import compose, initialize_config_dir

    from qexp.config_store import register_configs
    from qexp.data import load_eval_data
    from qexp.job import Job
    from qexp.models.architectures import by_name
    from qexp.quant.qdq_census import census
    from qexp.registry import MODEL_FAMILIES, QUANTIZERS

    torch.set_num_threads(1)
    register_configs()
    a = by_name(arch)
    model = (
        [f"model.weights={_random_weights(a.weights, out, a.name)}", f"model.name={a.name}"]
        if a.weights
        else a.overrides
    )
    work = Path(tempfile.mkdtemp(prefix=f"census-{a.name}-"))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            f"quantizer={quantizer}", *model, "data=tiny", f"model.imgsz={imgsz}",
            "data.calib.num=2", "data.max_images=2", "tracking=none",
            f"paths.output_dir={work}", f"paths.cache_dir={out / 'cache'}", *extra,
        ])  # fmt: skip
    job = Job(cfg=cfg, dir=work / "job", cache_dir=out / "cache")
    det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
    data = load_eval_data(cfg.data, job)
    deploy = QUANTIZERS.build(job.settings.quantizer).quantize(job, det, data)
    onnx_path = out / "onnx" / f"{a.name}_{quantizer}_{imgsz}_qdq.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(deploy.export(work / "onnx"), onnx_path)
    by_rule = list(deploy.info.get("float_by_rule", []))
    row: dict[str, Any] = {
        "arch": a.name,
        "head": "NMS-free" if getattr(det, "nms_free", False) else "NMS",
        **census(onnx_path, by_rule).row(),
        **parity(deploy, det, data, onnx_path, imgsz),
        "onnx": str(onnx_path.relative_to(out)),
        "float_layers": by_rule,
    }
    shutil.rmtree(work, ignore_errors=True)
    return {**row, "_deploy": deploy, "_detector": det, "_data": data}


@contextmanager
def without_top_k(module):
    """An NMS-free head's output before its top-k: (B, N, 4 + nc) boxes and scores of every
    anchor, comparable element by element (the top-k's order swaps on near-tied scores)."""
    head = module.model[-1]
    head.postprocess = lambda preds: preds
    try:
        yield module
    finally:
        del head.postprocess


def _run(deploy, det, data, onnx_path: Path, imgsz: int) -> tuple[list, list]:
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    want, got = [], []
    for b in list(data.batches(imgsz, 1, det.stride, rect=False))[:2]:
        x = np.ascontiguousarray(b.images)
        with torch.no_grad():
            want.append(det.raw(deploy.module(torch.from_numpy(x))).numpy())
        got.append(sess.run(None, {sess.get_inputs()[0].name: x})[0])
    return want, got


def parity(deploy, det, data, onnx_path: Path, imgsz: int) -> dict[str, float]:
    """ONNX Runtime on the Q/DQ graph vs the torch fake-quant model, on 2 images: the cosine and
    the median absolute difference of the raw outputs (of an NMS-free head: before its top-k,
    exported for this alone). Not detections: on random weights many boxes tie, and NMS or
    a top-k picks another of two near-equal ones on a last-bit difference."""
    from qexp.quant.deployable import export_qdq

    want, got = _run(deploy, det, data, onnx_path, imgsz)
    if getattr(det, "nms_free", False):
        with tempfile.TemporaryDirectory() as tmp, without_top_k(deploy.module):
            path = Path(tmp) / "pre_top_k.onnx"
            export_qdq(det, deploy.module, path, imgsz, 1)
            want, got = _run(deploy, det, data, path, imgsz)
    w = np.concatenate([x.ravel() for x in want]).astype(np.float64)
    g = np.concatenate([x.ravel() for x in got]).astype(np.float64)
    cos = float(w @ g / (np.linalg.norm(w) * np.linalg.norm(g)))
    median = float(np.median(np.abs(w - g)))
    return {"ort_cosine": round(cos, 7), "ort_median_abs": float(f"{median:.2g}")}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("outputs/arch_census"))
    ap.add_argument("--archs", default="", help="comma-separated names (default: the matrix)")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--quantizer", default="ptq_trt", help="ptq_trt (TensorRT rules) or ptq")
    ap.add_argument("overrides", nargs="*", help="more Hydra overrides (ignore.patterns=[...])")
    args = ap.parse_args(argv)

    from qexp import offline

    offline.setup()
    from qexp.models.architectures import MATRIX

    names = [n for n in args.archs.split(",") if n] or [a.name for a in MATRIX]
    rows = []
    for name in names:
        t = time.perf_counter()
        row = {k: v for k, v in build(name, args.out, args.imgsz, args.quantizer, tuple(args.overrides)).items()
               if not k.startswith("_")}  # fmt: skip
        rows.append(row)
        print(f"{name}: {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    (args.out / "census.json").write_text(json.dumps(rows, indent=1))
    print(f"{args.quantizer}, imgsz {args.imgsz}; ONNX under {args.out / 'onnx'}\n")
    print(table(rows))
    for r in rows:
        for f in r["float_layers"]:
            print(f"- {r['arch']}: {f['layer']} ({f['rule']}): {f['pattern']}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
