"""backend=onnxruntime: mAP and latency of the exported ONNX (fp32 or Q/DQ) on the CPU."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig

from qexp.backends.export_cache import cached_export
from qexp.backends.latency import fixed_batch, latency_metrics, measure
from qexp.config.schema import BackendConfig
from qexp.eval import evaluate
from qexp.models.detector import torch_predict
from qexp.registry import BACKENDS
from qexp.threads import job_threads, ort_options, torch_threads

if TYPE_CHECKING:
    import onnxruntime as ort

    from qexp.data import EvalDataset
    from qexp.interfaces import Deployable
    from qexp.job import Job

log = logging.getLogger("qexp")
_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass
class OrtBackendConfig(BackendConfig):
    name: str = "onnxruntime"
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    graph_optimization: str = "all"  # disable | basic | extended | all
    # spin-wait between ops (ONNX Runtime's default): no faster here, and on a machine shared
    # with torch or other jobs it burns the cores they need (docs/results/cpu-eval-speed.md)
    spin: bool = False


def make_session(
    path: Path,
    threads: int = 0,
    providers: list[str] | None = None,
    opt: str = "all",
    spin: bool = False,
) -> ort.InferenceSession:
    """An InferenceSession on ``threads`` intra-op threads (0: this job's share of the cores,
    see qexp/threads.py), spin-waiting only if ``spin``."""
    import onnxruntime as ort

    if opt not in _OPT_LEVELS:
        raise ValueError(
            f"backend.graph_optimization={opt!r}: must be one of {', '.join(_OPT_LEVELS)}"
        )
    so = ort_options(ort.SessionOptions(), threads or job_threads().n, spin)
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[opt])
    so.log_severity_level = 3  # warnings about unused initializers are noise here
    return ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])


def static_batch(sess: ort.InferenceSession) -> int | None:
    """The ONNX's fixed batch size, or None when the batch axis is symbolic."""
    dim = sess.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) else None


def dynamic_hw(sess: ort.InferenceSession) -> bool:
    return not all(isinstance(d, int) for d in sess.get_inputs()[0].shape[2:])


def ort_predict(sess: ort.InferenceSession) -> Callable[[np.ndarray], np.ndarray]:
    """numpy batch -> first output; a short last batch is padded for a fixed-batch model."""
    name = sess.get_inputs()[0].name
    fixed = static_batch(sess)

    def predict(x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        xin = fixed_batch(x, fixed) if fixed else x
        return sess.run(None, {name: xin})[0][:n]

    return predict


@BACKENDS.register("onnxruntime", schema=OrtBackendConfig)
class OrtBackend:
    consumes: frozenset[str] = frozenset()

    def check(self, cfg: DictConfig) -> str | None:
        q = cfg.quantizer
        if q.name == "trt_builtin":
            return "onnxruntime cannot run quantizer=trt_builtin: TensorRT calibrates inside its own builder"
        if q.get("export") == "dynamic_range":
            return "onnxruntime cannot apply TensorRT dynamic ranges (quantizer.export=dynamic_range); use export=qdq"
        if q.get("precision") == "fp16":
            return "fp16 is not measured on the CPU: onnxruntime's CPU provider has no fp16 convolutions (use backend=tensorrt)"
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            return f"onnxruntime not available ({e})"
        return None

    def run(self, job: Job, deploy: Deployable, data: EvalDataset) -> None:
        rect = bool(job.cfg.data.get("rect", False))
        # rect mode (ultralytics' val() default): each batch its own shape, so a dynamic export
        path = cached_export(job, deploy, int(job.cfg.data.get("batch") or 1), dynamic=rect)
        job.add_artifact("onnx", path)
        threads = job_threads(int(job.cfg.backend.threads))
        with torch_threads(threads.n):  # the torch reference pass (alignment) shares the cores
            self._run(job, deploy, data, path, threads.n)
        job.info.update(threads.info())

    def _run(
        self, job: Job, deploy: Deployable, data: EvalDataset, path: Path, threads: int
    ) -> None:
        import onnxruntime as ort

        cfg, b = job.cfg, job.cfg.backend
        imgsz, batch = int(cfg.model.imgsz), int(cfg.data.get("batch") or 1)
        rect = bool(cfg.data.get("rect", False))
        sess = make_session(
            path,
            threads,
            list(b.get("providers") or []),
            str(b.get("graph_optimization", "all")),
            bool(b.spin),
        )
        if rect and not dynamic_hw(sess):
            log.warning(
                "data.rect=true but %s has a fixed input shape: evaluating square %d",
                path.name,
                imgsz,
            )
            rect = False
        detector = deploy.detector
        reference = None
        if b.align and deploy.route in ("float", "qdq"):
            # float: torch fp32 vs ONNX fp32; qdq: the fake-quant module vs its Q/DQ export
            reference = torch_predict(detector, deploy.module)
        res = evaluate(
            ort_predict(sess),
            detector,
            data,
            imgsz,
            batch,
            rect,
            job,
            reference=reference,
            scope="onnxruntime",
        )
        job.log_metrics({k: res[k] for k in ("map50_95", "map50", "eval_s")})
        if reference is not None:
            job.log_metrics(
                {k: res[k] for k in ("align_max_abs_diff", "align_cosine", "align_map_delta")}
            )
            job.log_metrics(
                {"map50_95": res["ref_map50_95"], "map50": res["ref_map50"]}, prefix="torch/"
            )
        x = next(iter(data.batches(imgsz, batch, detector.stride, rect=False))).images
        x = fixed_batch(x, static_batch(sess) or batch)
        feed = {sess.get_inputs()[0].name: x}
        times = measure(lambda: sess.run(None, feed), int(b.warmup), int(b.iters))
        job.log_metrics(latency_metrics(times, x.shape[0]))
        job.info.update(
            onnxruntime=ort.__version__,
            ort_providers=sess.get_providers(),
            ort_threads=threads,
            ort_spinning=bool(b.spin),
            eval_rect=rect,
        )
