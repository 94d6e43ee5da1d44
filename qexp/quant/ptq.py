"""quantizer=ptq: post-training quantization with our observers.

The job's ignore list, then prepare -> calibrate (cached) -> set ranges
(:func:`qexp.quant.pipeline.calibrated`), then the Deployable of the fake-quant model: a Q/DQ
ONNX (``export=qdq``) or an fp32 ONNX with the observers' ranges (``export=dynamic_range``).
AdaRound and QAT start from the same steps; ModelOpt's and MQBench's PTQ are
``quantizer=ptq_modelopt`` and ``quantizer=ptq_mqbench`` (qexp/quant/plugins/).
"""

from __future__ import annotations

import dataclasses
import logging

from qexp.interfaces import Deployable, Detector, EvalData
from qexp.job import Job, content_hash
from qexp.quant import pipeline
from qexp.quant.deployable import make_deployable
from qexp.quant.pipeline import PTQConfig
from qexp.registry import QUANTIZERS

log = logging.getLogger("qexp")


@QUANTIZERS.register("ptq", schema=PTQConfig)
class PTQ(pipeline.FakeQuantQuantizer[PTQConfig]):
    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable:
        """prepare -> calibrate (cached) -> set ranges -> Deployable."""
        s, q = job.settings, self.cfg
        c = self.calibrated(job, detector, data)
        plan = c.plan
        job.log_metrics(c.timings())
        tag = content_hash(
            dataclasses.asdict(q), dataclasses.asdict(s.observer), plan.quantized, n=8
        )
        info = {**c.info(s), "calib_images": c.num, "act_amax": c.act_amax()}
        log.info(
            "ptq: %d layers quantized, %d ignored, %d float by design, %d by the TensorRT "
            "rules; calibration %s (%.1fs)",
            len(plan.quantized), len(plan.ignored), len(plan.fixed), len(plan.by_rule),
            info["calib_cache"], c.seconds,
        )  # fmt: skip
        return make_deployable(detector, c.qmodel, q.export, s.model.imgsz, tag, info, q.a_bits)
