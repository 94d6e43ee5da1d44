"""A TensorRT worker response into the job: scored outputs, latency and build metrics, the
engine's layer summary, and its inspector / profile JSON as the job's artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qexp.backends import trt_stage as stage
from qexp.interfaces import Deployable, EvalData
from qexp.job import Job
from qexp.trt import engine_info, protocol

if TYPE_CHECKING:
    from qexp.backends.tensorrt import TensorRTBackendConfig


def report(
    job: Job,
    b: TensorRTBackendConfig,
    deploy: Deployable,
    data: EvalData,
    resp: protocol.Response,
    index: dict[str, int],
    imgsz: int,
) -> None:
    """What the worker measured, into the job: mAP (at the eval batch and every other batch
    size), latency, build time, the engine's layer summary; its JSON as artifacts."""
    raw = np.load(resp.outputs[0], mmap_mode="r")
    predict = stage.lookup_predict(raw, index)
    ref = stage.torch_reference(deploy.detector, deploy.module) if b.align else None
    metrics = stage.evaluate(predict, deploy.detector, data, imgsz, b.eval_batch, job, ref)
    job.log_metrics(metrics)
    for bs, paths in sorted(resp.outputs_by_batch.items(), key=lambda kv: int(kv[0])):
        # the same images through the other profile: a broken profile or batch axis shows
        # as an mAP change, where raw-output diffs on empty anchors are only noise
        other = stage.lookup_predict(np.load(paths[0], mmap_mode="r"), index)
        m = stage.evaluate(other, deploy.detector, data, imgsz, b.eval_batch)
        job.log_metrics(
            {
                f"map50_95_b{bs}": m["map50_95"],
                f"batch_map_delta_b{bs}": m["map50_95"] - metrics["map50_95"],
            }
        )
    log_latency(job, resp.latency)
    job.log_metrics({"build_s": resp.build_s, "engine_bytes": resp.engine_bytes})
    for k in ("calib_s", "build_cpu_s"):
        if k in resp.build_stats:
            job.log_metrics({k: resp.build_stats[k]})
    sizes = sorted(int(k) for k in resp.layers)
    first = str(sizes[0])
    info = engine_info.load(resp.layers[first])
    per_batch = {bs: layer_summary(resp.layers[str(bs)], i) for i, bs in enumerate(sizes)}
    summary = per_batch[sizes[0]]
    job.log_metrics(summary.metrics())
    prof = json.loads(Path(resp.layer_profile).read_text()) if resp.layer_profile else {}
    times = engine_info.profile_times(prof) if prof else None
    engine = {
        "tensorrt": resp.tensorrt, "gpu": resp.gpu, "device": resp.device,
        "engine": resp.engine, "engine_bytes": resp.engine_bytes, "build": resp.build_stats,
        "reused_engine": resp.reused_engine, "latency": resp.latency,
        "batch_max_abs_diff": resp.batch_diff,
        "summary": {f"b{bs}": sm.to_dict() for bs, sm in per_batch.items()},
        "notes": resp.notes, "worker_s": resp.timings,
    }  # fmt: skip
    files = {
        "layers.json": json.dumps(info, indent=1),  # the engine's (all profiles on 8.6)
        "layers.csv": engine_info.to_csv(
            engine_info.layer_table(info, times, summary_profile(info, 0))
        ),
        "engine_summary.json": json.dumps(engine, indent=1),
        "engine_summary.md": "".join(
            f"batch {bs}:\n{engine_info.to_markdown(sm)}" for bs, sm in per_batch.items()
        ),
    }
    if prof:
        files["layer_profile.json"] = json.dumps(prof, indent=1)
    if resp.build_profile and Path(resp.build_profile).exists():
        files["build_profile.json"] = Path(resp.build_profile).read_text()
    for bs, path in resp.layers.items():
        if path != resp.layers[first]:  # a TensorRT that reports one profile per context
            files[f"layers_b{bs}.json"] = Path(path).read_text()
    for name, text in files.items():
        job.add_artifact(name, write_text(job.path("artifacts", name), text))
    job.info["tensorrt"] = {
        k: engine[k] for k in ("tensorrt", "gpu", "reused_engine", "notes", "batch_max_abs_diff")
    }
    job.info["tensorrt"]["precisions"] = summary.precisions
    job.info["gpu"] = resp.device
    job.info["cuda_graph"] = all(st.get("cuda_graph") for st in resp.latency.values())


def summary_profile(info: dict[str, Any], index: int) -> int | None:
    """The profile to read from ``info``: ``index`` where layer names carry '[profile N]'
    (a whole multi-profile engine), else all layers (the JSON is that context's alone)."""
    tagged = any(engine_info.profile_of(L) > 0 for L in engine_info.layers(info, None))
    return index if tagged else None


def layer_summary(path: str, index: int) -> engine_info.EngineSummary:
    info = engine_info.load(path)
    return engine_info.summarize(info, summary_profile(info, index))


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def log_latency(job: Job, latency: dict[str, dict[str, Any]]) -> None:
    """latency_ms_p50/p90/mean at the smallest batch (batch 1), ..._b<N> at the others;
    throughput_ips_b<N> everywhere."""
    smallest = min(int(k) for k in latency)
    for bs, st in latency.items():
        suffix = "" if int(bs) == smallest else f"_b{bs}"
        for stat in ("p50", "p90", "mean"):
            job.log_metrics({f"latency_ms_{stat}{suffix}": st[stat]})
        job.log_metrics({f"throughput_ips_b{bs}": st["throughput_ips"]})
