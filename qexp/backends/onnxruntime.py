"""backend=onnxruntime: mAP and latency of the exported ONNX (fp32 or Q/DQ) on the CPU."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qexp import cache
from qexp.backends.export_cache import cached_export
from qexp.backends.latency import fixed_batch, latency_metrics, measure
from qexp.backends.ort_int8 import deploy_form
from qexp.config.schema import BackendConfig, added
from qexp.contracts import Accepts, Choice, Output, Precision, Route
from qexp.eval import evaluate
from qexp.models.detector import torch_predict
from qexp.registry import BACKENDS
from qexp.threads import job_threads, ort_options, torch_threads

if TYPE_CHECKING:
    import onnxruntime as ort

    from qexp.config.settings import Settings
    from qexp.data import EvalDataset
    from qexp.interfaces import Deployable
    from qexp.job import Job

log = logging.getLogger("qexp")


class GraphOptimization(Choice):
    """ONNX Runtime's graph optimisation level."""

    disable = "disable"
    basic = "basic"
    extended = "extended"
    all = "all"


_OPT_LEVELS = {
    GraphOptimization.disable: "ORT_DISABLE_ALL",
    GraphOptimization.basic: "ORT_ENABLE_BASIC",
    GraphOptimization.extended: "ORT_ENABLE_EXTENDED",
    GraphOptimization.all: "ORT_ENABLE_ALL",
}


class Int8Form(Choice):
    """What an INT8 (Q/DQ) job runs on ONNX Runtime."""

    qdq = "qdq"  # the Q/DQ export as it is (the TensorRT form: on ORT, float convs + Q/DQ)
    qlinear = "qlinear"  # its deploy form for ORT's integer kernels (backends/ort_int8.py)
    qlinear_conv = "qlinear_conv"  # the same with only the convs on integers: slower, closer


CPU_NO_FP16 = (
    "fp16 is not measured on the CPU: onnxruntime's CPU provider has no fp16 convolutions "
    "(use backend=tensorrt)"
)


@dataclass
class OrtBackendConfig(BackendConfig):
    name: str = "onnxruntime"
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    graph_optimization: GraphOptimization = GraphOptimization.all
    # spin-wait between ops (ONNX Runtime's default): no faster here, and on a machine shared
    # with torch or other jobs it burns the cores they need (docs/results/cpu-eval-speed.md)
    spin: bool = False
    # qlinear: ~2x fp32 on x86 where qdq is slower than fp32 (docs/results/search.md)
    int8_form: Int8Form = added(Int8Form.qdq)
    # calibration images ORT ranges the qlinear form's extra tensors on (conv outputs)
    qlinear_calib: int = field(default=32, metadata={"added": True, "ge": 1})


def make_session(
    path: Path,
    threads: int = 0,
    providers: list[str] | None = None,
    opt: str = "all",
    spin: bool = False,
) -> ort.InferenceSession:
    """An InferenceSession on ``threads`` intra-op threads (0: this job's share of the cores,
    see qexp/threads.py), spin-waiting only if ``spin``; ``opt``: a GraphOptimization."""
    import onnxruntime as ort

    so = ort_options(ort.SessionOptions(), threads or job_threads().n, spin)
    so.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, _OPT_LEVELS[GraphOptimization(opt)]
    )
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
    accepts = Accepts(
        precisions=frozenset({Precision.fp32, Precision.int8}),
        routes=frozenset({Route.float, Route.qdq}),
        why_not={
            Precision.fp16: CPU_NO_FP16,
            Route.dynamic_range: "onnxruntime cannot apply TensorRT dynamic ranges; use export=qdq",
            Route.trt_builtin: "TensorRT's calibrators run inside its own builder",
        },
    )

    def __init__(self, cfg: OrtBackendConfig) -> None:
        self.cfg = cfg

    def check(self, s: Settings, output: Output) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            return f"onnxruntime not available ({e})"
        return None

    def run(self, job: Job, deploy: Deployable, data: EvalDataset) -> None:
        d = job.settings.data
        threads = job_threads(self.cfg.threads)
        # the export's trace and the torch reference pass (alignment) share the job's cores
        with torch_threads(threads.n):
            # rect mode (ultralytics' val() default): each batch its own shape: a dynamic export
            path = cached_export(job, deploy, d.batch, dynamic=d.rect)
            job.add_artifact("onnx", path)
            if deploy.route == Route.qdq and self.cfg.int8_form != Int8Form.qdq:
                path = self._qlinear(job, path, data)
                job.add_artifact("onnx_qlinear", path)
            self._run(job, deploy, data, path, threads.n)
        job.info.update(threads.info())

    def _qlinear(self, job: Job, qdq: Path, data: EvalDataset) -> Path:
        """The cached ORT deploy form of the ``qdq`` export (built on a miss)."""
        import onnxruntime as ort

        s = job.settings
        n = min(self.cfg.qlinear_calib, s.data.calib.num)
        form = Int8Form(self.cfg.int8_form)
        key = (cache.file_hash(qdq, 16), s.model.imgsz, n, str(s.data.calib), ort.__version__, form)
        entry = job.cache(
            "onnx_qlinear", *key, cache.file_hash(Path(__file__).with_name("ort_int8.py"), 16)
        )
        name = f"{qdq.stem}_{form}.onnx"

        def build(tmp: Path) -> list[str]:
            log.info(
                "writing the ONNX Runtime deploy form of %s (%d calibration images)", qdq.name, n
            )
            calib = data.calibration(s.model.imgsz, n)
            deploy_form(qdq, tmp / name, calib, conv_only=form == Int8Form.qlinear_conv)
            return [name]

        cache.cached(entry, build, meta={"kind": "onnx_qlinear"})
        return entry / name

    def _run(
        self, job: Job, deploy: Deployable, data: EvalDataset, path: Path, threads: int
    ) -> None:
        import onnxruntime as ort

        s, b = job.settings, self.cfg
        imgsz, batch, rect = s.model.imgsz, s.data.batch, s.data.rect
        sess = make_session(path, threads, list(b.providers), b.graph_optimization, b.spin)
        if rect and not dynamic_hw(sess):
            log.warning(
                "data.rect=true but %s has a fixed input shape: evaluating square %d",
                path.name,
                imgsz,
            )
            rect = False
        detector = deploy.detector
        reference = None
        if b.align and deploy.route in (Route.float, Route.qdq):
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
        times = measure(lambda: sess.run(None, feed), b.warmup, b.iters)
        job.log_metrics(latency_metrics(times, x.shape[0]))
        job.info.update(
            onnxruntime=ort.__version__,
            ort_providers=sess.get_providers(),
            ort_threads=threads,
            ort_spinning=b.spin,
            eval_rect=rect,
            ort_int8_form=str(b.int8_form) if deploy.route == Route.qdq else None,
        )
