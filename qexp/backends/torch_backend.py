"""backend=torch: mAP and CPU latency of the Deployable's module (float, or its fake-quant twin)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from qexp.backends.latency import latency_metrics, measure
from qexp.config.schema import BackendConfig
from qexp.contracts import Accepts, Output, Precision, Route
from qexp.eval import evaluate
from qexp.models.detector import torch_predict
from qexp.registry import BACKENDS
from qexp.threads import job_threads, torch_threads

if TYPE_CHECKING:
    from qexp.config.settings import Settings
    from qexp.data import EvalDataset
    from qexp.interfaces import Deployable
    from qexp.job import Job


@dataclass
class TorchBackendConfig(BackendConfig):
    name: str = "torch"
    align: bool = False  # nothing to align: this backend runs the torch module itself


@BACKENDS.register("torch", schema=TorchBackendConfig)
class TorchBackend:
    # the module itself: float, or the fake-quant twin whatever ONNX its route would export
    accepts = Accepts(
        precisions=frozenset({Precision.fp32, Precision.int8}),
        routes=frozenset({Route.float, Route.qdq, Route.dynamic_range}),
        why_not={
            Precision.fp16: "fp16 is not measured on the CPU: torch's CPU fp16 convolutions are "
            "neither fast nor what TensorRT runs (use backend=tensorrt)",
            Route.trt_builtin: "TensorRT's calibrators quantize inside its builder; the torch "
            "module would only re-measure fp32",
        },
    )

    def __init__(self, cfg: TorchBackendConfig) -> None:
        self.cfg = cfg

    def check(self, s: Settings, output: Output) -> str | None:
        return None

    def run(self, job: Job, deploy: Deployable, data: EvalDataset) -> None:
        s, b = job.settings, self.cfg
        imgsz, batch, rect = s.model.imgsz, s.data.batch, s.data.rect
        detector = deploy.detector
        module = deploy.module.eval()
        predict = torch_predict(detector, module)
        threads = job_threads(b.threads)
        with torch_threads(threads.n):
            res = evaluate(predict, detector, data, imgsz, batch, rect, job, scope="torch")
            job.log_metrics({k: res[k] for k in ("map50_95", "map50", "eval_s")})
            x = torch.from_numpy(
                next(iter(data.batches(imgsz, batch, detector.stride, rect=False))).images
            )

            def forward() -> None:
                with torch.inference_mode():
                    module(x)

            times = measure(forward, b.warmup, b.iters)
        job.log_metrics(latency_metrics(times, x.shape[0]))
        job.info.update(torch_threads=threads.n, eval_rect=rect, **threads.info())
