"""quantizer=ptq_mqbench: MQBench's observers calibrate, qexp deploys (optional).

MQBench traces the float (BN-folded) model with ``BackendType.Tensorrt`` (per-channel symmetric
weights, per-tensor symmetric activations, range [-127, 127]) and calibrates with the observer
``observer.act`` / ``observer.weight`` name (see ``OBSERVERS``). The range of the MQBench
fake-quantizer feeding each quantized convolution, and of its weight fake-quantizer, become
the amaxes of qexp's own fake-quant model, so qexp's exports (Q/DQ or dynamic range), backends
and torch evaluation run what MQBench calibrated. The identity branch of a residual add is the
same tensor as its block's first convolution input, so it takes that MQBench range too.
MQBench's own TensorRT clip-range JSON (``convert_deploy``) is written as a job artifact.
Calibrated ranges are cached: the jobs of a sweep that differ only in backend calibrate once.

Its tracer needs YOLO rewritten: ultralytics ``C2f`` runs ``forward_split`` (no ``chunk`` of a
proxy) and ``Detect`` runs with ``export=True, dynamic=True`` (no shape-keyed anchor cache);
the top-level forward is unrolled over ``model.model`` (``DetectionModel.forward`` takes
``*args``). Ultralytics detection models only. MQBench is an optional extra: without it the
job is SKIPPED.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from unittest import mock

import torch
from torch import nn

from qexp.config.schema import Export, Impl
from qexp.config.settings import Settings
from qexp.interfaces import Deployable, Detector, EvalData
from qexp.job import Job, content_hash
from qexp.quant import model_cache
from qexp.quant.calibrate import batched, weights_hash
from qexp.quant.deployable import make_deployable
from qexp.quant.fakequant import ActQuantizer, quant_layers
from qexp.quant.pipeline import FakeQuantQuantizer, PTQConfig
from qexp.quant.plugins.guard import missing
from qexp.quant.qdq_rules import QdqRules
from qexp.quant.sensitivity import ignore_patterns
from qexp.quant.steps import prepare_model
from qexp.registry import QUANTIZERS

log = logging.getLogger("qexp")
# observer name -> MQBench observer class (its ObserverDict names)
OBSERVERS = {
    "minmax": "MinMaxObserver",
    "mse": "MSEObserver",
    "percentile": "EMAQuantileObserver",  # per-batch quantile, averaged over batches (EMA 0.9)
}
WEIGHT_OBSERVERS = ("minmax", "mse")
CALIB_BATCH = 16
CACHE_VERSION = 1
CLIP_JSON = "mqbench_clip_ranges.json"


@dataclass
class MQBenchConfig(PTQConfig):
    name: str = "ptq_mqbench"
    impl: Impl = Impl.mqbench
    export: Export = Export.dynamic_range  # its clip ranges are TensorRT's dynamic ranges
    IMPL = Impl.mqbench


def check(q: PTQConfig, s: Settings) -> str | None:
    if q.qdq_rules != QdqRules.none:  # its ranges are set per layer: tying would undo them
        return "quantizer=ptq_mqbench sets its own ranges per layer: qdq_rules=none only"
    if why := missing("mqbench", "quantizer=ptq_mqbench needs MQBench", "mqbench"):
        return why
    if s.observer.act not in OBSERVERS:
        # MQBench's KLDObserver is torch's HistogramObserver (an L2 search), not TensorRT's KL
        return (
            f"quantizer=ptq_mqbench: no MQBench observer for observer.act={s.observer.act} "
            f"(one of {', '.join(OBSERVERS)}; its KLDObserver is not TensorRT's entropy)"
        )
    if s.observer.weight not in WEIGHT_OBSERVERS:
        return f"quantizer=ptq_mqbench: observer.weight is one of {', '.join(WEIGHT_OBSERVERS)}"
    if q.w_bits != 8 or q.a_bits != 8:
        return "quantizer=ptq_mqbench: MQBench's TensorRT scheme is INT8 (w_bits=a_bits=8)"
    if not q.per_channel:
        return "quantizer=ptq_mqbench: MQBench's TensorRT scheme has per-channel weights"
    if s.model.family != "ultralytics":
        return "quantizer=ptq_mqbench traces ultralytics detection models only (model.family)"
    return None


@QUANTIZERS.register("ptq_mqbench", schema=MQBenchConfig)
class MQBenchPTQ(FakeQuantQuantizer[MQBenchConfig]):
    def check(self, s: Settings) -> str | None:
        return check(self.cfg, s)

    def quantize(self, job: Job, detector: Detector, data: EvalData) -> Deployable:
        return quantize(job, detector, data, self.cfg)


class Traceable(nn.Module):
    """``DetectionModel._predict_once`` unrolled over ``model.model`` (FX cannot trace its
    ``*args`` forward); module names stay ``model.<i>....`` as in qexp's plan."""

    def __init__(self, det: nn.Module) -> None:
        super().__init__()
        from ultralytics.nn.modules import C2f, Detect

        self.model = cast(nn.Module, det.model)
        self.save = list(cast(Any, det).save)
        for m in self.model.modules():
            if type(m) is C2f:
                m.forward = m.forward_split  # type: ignore[method-assign]
            if isinstance(m, Detect):
                m.export, m.dynamic = True, True

    def forward(self, x: Any) -> Any:
        y: list[Any] = []
        for m in cast(Any, self.model):
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x


def prepare_mqbench(fmodel: nn.Module, act: str, weight: str, percentile: float):
    """MQBench's TensorRT-scheme GraphModule of a copy of ``fmodel``, in calibration mode."""
    import copy

    from mqbench.prepare_by_platform import BackendType, prepare_by_platform
    from mqbench.utils.state import enable_calibration

    extra: dict[str, Any] = {
        "w_observer": OBSERVERS[weight],
        "a_observer": OBSERVERS[act],
        "w_fakequantize": "FixedFakeQuantize",
        "a_fakequantize": "FixedFakeQuantize",
        # its TensorRT scheme, given explicitly: the defaults are shared objects of MQBench's
        # ParamsTable, and observer extra args would be written into them for every later job
        "w_qscheme": {"bit": 8, "symmetry": True, "per_channel": True, "pot_scale": False,
                      "symmetric_range": True},
        "a_qscheme": {"bit": 8, "symmetry": True, "per_channel": False, "pot_scale": False,
                      "symmetric_range": True},
    }  # fmt: skip
    if act == "percentile":
        extra["a_observer_extra_args"] = {"threshold": percentile / 100.0}
    graph = prepare_by_platform(
        Traceable(copy.deepcopy(fmodel)), BackendType.Tensorrt, {"extra_qconfig_dict": extra}
    )
    enable_calibration(graph)
    return graph


def _amax(fake_quant: nn.Module) -> torch.Tensor:
    """A symmetric fake-quantizer's clip range: scale * qmax (per channel for weights)."""
    obs = cast(Any, fake_quant).activation_post_process
    scale, _ = obs.calculate_qparams()
    return (scale.detach().float() * (obs.quant_max - obs.quant_min) / 2).reshape(-1)


def mqbench_ranges(graph, layers: list[str]) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """(input amax, weight amax) of each of ``layers``: the MQBench fake-quantizer node feeding
    the conv's input, and the conv's weight fake-quantizer."""
    act, weight = {}, {}
    for node in graph.graph.nodes:
        if node.op != "call_module" or node.target not in layers:
            continue
        src = node.args[0]
        if getattr(src, "op", None) == "call_module" and "fake_quant" in str(src.target):
            act[node.target] = float(_amax(graph.get_submodule(src.target)))
        conv = graph.get_submodule(node.target)
        if hasattr(conv, "weight_fake_quant"):
            weight[node.target] = _amax(conv.weight_fake_quant)
    return act, weight


def feeds_add(graph, layer: str) -> bool:
    """Whether the MQBench fake-quantizer in front of ``layer`` also feeds an add (the
    identity branch of a residual block: the tensor qexp's residual quantizer sees)."""
    import operator

    for node in graph.graph.nodes:
        if node.op == "call_module" and node.target == layer:
            src = node.args[0]
            return any(u.op == "call_function" and u.target in (operator.add, torch.add)
                       for u in src.users)  # fmt: skip
    return False


def fold_constants(path: Path) -> int:
    """Constant nodes become initializers, and an Identity of an initializer a copy of it.

    MQBench's parser wants each quantizer's parameters as initializers and gets them by
    shelling out to ``polygraphy surgeon sanitize --fold-constants`` (not a dependency): the
    TorchScript exporter writes the quantizers' qmin/qmax as Constant nodes, shared between
    quantizers (which the parser then removes twice), and equal initializers (zero points)
    through Identity nodes. This is the part of that folding it needs. Returns nodes folded."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    folded = []
    for node in graph.node:
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            tensor = numpy_helper.from_array(
                numpy_helper.to_array(node.attribute[0].t), node.output[0]
            )
        elif node.op_type == "Identity" and node.input[0] in inits:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(inits[node.input[0]])
            tensor.name = node.output[0]
        else:
            continue
        graph.initializer.append(tensor)
        inits[tensor.name] = tensor
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    onnx.save(model, str(path))
    return len(folded)


@contextlib.contextmanager
def mqbench_symbolics() -> Iterator[None]:
    """MQBench's ONNX symbolics for the fake-quant ops, only while inside.

    Importing ``mqbench.convert_deploy`` registers them process-wide: every later export of
    ``fake_quantize_per_*_affine`` (qexp's Q/DQ export included) would write MQBench's custom
    ops instead of QuantizeLinear/DequantizeLinear."""
    import mqbench.custom_symbolic_opset as ops

    symbolics = {
        "::_fake_quantize_learnable_per_tensor_affine": (
            ops._fake_quantize_learnable_per_tensor_affine
        ),
        "::fake_quantize_per_channel_affine": ops.fake_quantize_per_channel_affine,
        "::fake_quantize_per_tensor_affine": ops.fake_quantize_per_tensor_affine,
    }
    opsets = range(1, 18)
    for name, fn in symbolics.items():
        for opset in opsets:
            torch.onnx.register_custom_op_symbolic(name, fn, opset)
    try:
        yield
    finally:
        for name in symbolics:
            for opset in opsets:
                torch.onnx.unregister_custom_op_symbolic(name, opset)


def write_clip_json(graph, imgsz: int, out: Path) -> Path:
    """MQBench's own TensorRT deploy of the calibrated ``graph``: its clip-range JSON
    (``{"tensorrt": {"blob_range": {onnx tensor: amax}}}``), copied to ``out``."""
    from mqbench.convert_deploy import convert_merge_bn, convert_onnx, deploy_qparams_tensorrt
    from mqbench.utils.state import enable_quantization
    from mqbench.utils.utils import deepcopy_graphmodule

    model = deepcopy_graphmodule(graph)
    enable_quantization(model)
    convert_merge_bn(model)
    export = functools.partial(torch.onnx.export, dynamo=False)  # its exporter predates dynamo
    with tempfile.TemporaryDirectory() as tmp, mqbench_symbolics():
        path = Path(tmp) / "mqbench.onnx"
        # convert_onnx ends by shelling out to polygraphy; fold_constants instead
        with mock.patch.object(torch.onnx, "export", export), mock.patch("os.system"):
            convert_onnx(model, {"x": [1, 3, imgsz, imgsz]}, None, str(path))
        fold_constants(path)
        deploy_qparams_tensorrt(model, str(path), "mqbench")
        shutil.copy2(Path(tmp) / "mqbench_clip_ranges.json", out)
    return out


@torch.no_grad()
def calibrate_mqbench(job: Job, fmodel: nn.Module, data: EvalData, layers: list[str]) -> tuple:
    """(act amaxes, weight amaxes, clip JSON in ``directory``) from one MQBench calibration."""
    s = job.settings
    imgsz, num = s.model.imgsz, s.data.calib.num
    graph = prepare_mqbench(fmodel, s.observer.act, s.observer.weight, s.observer.percentile)
    images = job.track(data.calibration(imgsz, num), "mqbench calibration", total=num)
    for x in batched(images, CALIB_BATCH):
        graph(torch.from_numpy(x))
    act, weight = mqbench_ranges(graph, layers)
    return graph, act, weight


def quantize(job: Job, detector: Detector, data: EvalData, q: PTQConfig) -> Deployable:
    s = job.settings
    t0 = time.perf_counter()
    imgsz = s.model.imgsz
    fmodel, qmodel, plan = prepare_model(
        detector.module, ignore_patterns(job, detector, data), q, q.fold_bn
    )
    act_name, w_name = s.observer.act, s.observer.weight
    key = (
        "mqbench", CACHE_VERSION, importlib.metadata.version("mqbench-torch2"),
        weights_hash(fmodel), imgsz, dataclasses.asdict(s.data.calib), s.data.calib.num,
        CALIB_BATCH, OBSERVERS[act_name], OBSERVERS[w_name], s.observer.percentile,
    )  # fmt: skip
    directory = job.cache("mqbench", *key)
    cached = model_cache.load(directory)
    t = time.perf_counter()
    if cached is not None and (directory / CLIP_JSON).exists():
        state = cached[0]
        act = {k[4:]: float(v) for k, v in state.items() if k.startswith("act/")}
        weight = {k[7:]: v for k, v in state.items() if k.startswith("weight/")}
        hit = True
        log.info("mqbench: calibrated ranges loaded from the cache %s", directory)
    else:
        graph, act, weight = calibrate_mqbench(job, fmodel, data, plan.quantized + plan.ignored)
        unverified = [b for b, first in plan.residual.items() if not feeds_add(graph, first)]
        if unverified:
            raise RuntimeError(f"mqbench: no MQBench quantizer on the residual add of {unverified}")
        write_clip_json(graph, imgsz, directory / CLIP_JSON)
        state = {f"act/{k}": torch.tensor(v) for k, v in act.items()}
        state.update({f"weight/{k}": v for k, v in weight.items()})
        model_cache.save(directory, state, {"seconds": time.perf_counter() - t})
        hit = False
    calib_s = time.perf_counter() - t
    missing = sorted(set(plan.quantized) - set(act) | set(plan.quantized) - set(weight))
    if missing:
        raise RuntimeError(f"mqbench: no MQBench quantizer in front of {missing}")
    layers = quant_layers(qmodel)
    with torch.no_grad():
        for name in plan.quantized:
            layers[name].input_quantizer.set_amax(act[name])
            layers[name].weight_quantizer.set_amax(weight[name])
        for block, first in plan.residual.items():
            # the identity branch is the tensor MQBench quantizes in front of `first` and of
            # the add (checked by feeds_add when calibrating)
            cast(ActQuantizer, qmodel.get_submodule(block).residual_quantizer).set_amax(act[first])
    clip = job.add_artifact("mqbench_clip_ranges", directory / CLIP_JSON, copy=True)
    blob_range = json.loads(Path(clip).read_text())["tensorrt"]["blob_range"]
    job.log_metrics({"calib_s": calib_s, "quantize_s": time.perf_counter() - t0})
    info = {
        **plan.info(),
        "impl": "mqbench",
        "observer": {
            "act": act_name, "weight": w_name,
            "mqbench_act": OBSERVERS[act_name], "mqbench_weight": OBSERVERS[w_name],
        },
        "mqbench_version": importlib.metadata.version("mqbench-torch2"),
        "mqbench_ranges": {"act": len(plan.quantized), "weight": len(plan.quantized),
                           "residual": len(plan.residual), "clip_json_tensors": len(blob_range)},
        "range_fallbacks": [],  # every quantizer took an MQBench range (else the job fails)
        "calib_images": s.data.calib.num,
        "calib_cache": "hit" if hit else "miss",
        "act_amax": {k: round(v, 6) for k, v in act.items() if k in plan.quantized},
    }  # fmt: skip
    log.info(
        "mqbench: %d layers with MQBench %s/%s ranges, %d residual; calibration %s (%.1fs)",
        len(plan.quantized), OBSERVERS[act_name], OBSERVERS[w_name], len(plan.residual),
        info["calib_cache"], calib_s,
    )  # fmt: skip
    tag = "mq_" + content_hash(key, plan.quantized, n=8)
    return make_deployable(detector, qmodel, q.export, imgsz, tag, info)
