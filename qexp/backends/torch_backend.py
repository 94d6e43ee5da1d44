"""backend=torch: mAP and CPU latency of the Deployable's module (float, or its fake-quant twin)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig

from qexp.backends.latency import latency_metrics, measure
from qexp.config.schema import BackendConfig
from qexp.eval import evaluate
from qexp.models.detector import torch_predict
from qexp.registry import BACKENDS
from qexp.threads import job_threads, torch_threads

if TYPE_CHECKING:
    from qexp.data import EvalDataset
    from qexp.interfaces import Deployable
    from qexp.job import Job


@dataclass
class TorchBackendConfig(BackendConfig):
    name: str = "torch"
    align: bool = False  # nothing to align: this backend runs the torch module itself


@BACKENDS.register("torch", schema=TorchBackendConfig)
class TorchBackend:
    consumes: frozenset[str] = frozenset()

    def check(self, cfg: DictConfig) -> str | None:
        q = cfg.quantizer
        if q.name == "trt_builtin":
            return "quantizer=trt_builtin quantizes inside TensorRT; the torch backend would only re-measure fp32"
        if q.get("precision") == "fp16":
            return "fp16 is not measured on the CPU: torch's CPU fp16 convolutions are neither fast nor what TensorRT runs (use backend=tensorrt)"
        return None

    def run(self, job: Job, deploy: Deployable, data: EvalDataset) -> None:
        cfg, b = job.cfg, job.cfg.backend
        imgsz, batch = int(cfg.model.imgsz), int(cfg.data.get("batch") or 1)
        rect = bool(cfg.data.get("rect", False))
        detector = deploy.detector
        module = deploy.module.eval()
        predict = torch_predict(detector, module)
        threads = job_threads(int(b.threads))
        with torch_threads(threads.n):
            res = evaluate(predict, detector, data, imgsz, batch, rect, job, scope="torch")
            job.log_metrics({k: res[k] for k in ("map50_95", "map50", "eval_s")})
            x = torch.from_numpy(
                next(iter(data.batches(imgsz, batch, detector.stride, rect=False))).images
            )

            def forward() -> None:
                with torch.inference_mode():
                    module(x)

            times = measure(forward, int(b.warmup), int(b.iters))
        job.log_metrics(latency_metrics(times, x.shape[0]))
        job.info.update(torch_threads=threads.n, eval_rect=rect, **threads.info())
