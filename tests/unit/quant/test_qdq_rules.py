"""quantizer.qdq_rules=trt on the real yolov8n and yolov5n: in the exported Q/DQ ONNX, every
tensor group joined through Concat, MaxPool, Slice or Resize carries one scale (what TensorRT
needs to keep it INT8 without reformat layers), residual identities are quantized with their
group's scale, the shape arithmetic is still folded, and ONNX Runtime runs what the torch
fake-quant model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from qexp.config.validate import ConfigError, validate
from qexp.job import Job
from qexp.quant.fakequant import ActQuantizer
from qexp.quant.histogram import HistStats, merge
from qexp.quant.placement import prepare
from qexp.registry import MODEL_FAMILIES, QUANTIZERS
from qexp.runner import combination_reason, config_hash
from tests.unit.quant import qdq_graph as G
from tests.unit.quant.conftest import TinyYolo, ort_run, randomize_bn

IMGSZ = 64
# bottlenecks with a residual add: yolov8n's C2f blocks in the backbone, yolov5n's C3 ones
RESIDUAL_ADDS = {"yolov8n": 6, "yolov5n": 7}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(model, rules) -> (deploy, exported ONNX path, detector, data), built once each."""
    from hydra import compose, initialize_config_dir

    from qexp.config_store import register_configs
    from qexp.data import load_eval_data
    from tests.conftest import CONF

    register_configs()
    root = tmp_path_factory.mktemp("qdq_rules")
    out: dict[tuple[str, str], tuple] = {}

    def get(model: str, rules: str):
        if (model, rules) not in out:
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                cfg = compose("config", overrides=[
                    "quantizer=ptq", f"model={model}", "data=tiny", f"model.imgsz={IMGSZ}",
                    "data.calib.num=2", "data.max_images=2", f"quantizer.qdq_rules={rules}",
                    f"paths.output_dir={root}",
                ])  # fmt: skip
            job = Job(cfg=cfg, dir=root / f"{model}_{rules}", cache_dir=root / "cache")
            det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
            data = load_eval_data(cfg.data, job)
            deploy = QUANTIZERS.build(job.settings.quantizer).quantize(job, det, data)
            out[model, rules] = (deploy, Path(deploy.export(job.dir / "onnx")), det, data)
        return out[model, rules]

    return get


@pytest.mark.assets
@pytest.mark.parametrize("model", ["yolov8n", "yolov5n"])
def test_every_concat_group_carries_one_scale(built, model):
    deploy, path, _, _ = built(model, "trt")
    m = onnx.load(str(path))
    scales = G.scales_by_component(m)
    concats = G.concat_components(m)
    assert len(concats) >= 15  # C2f/C3 blocks, SPPF, the neck (the head's concats: no Q)
    mixed = {c: s for c, s in scales.items() if len(s) > 1}
    assert not mixed, f"{len(mixed)} tensor groups with several scales"
    assert deploy.info["shared_scales"], "the record lists the tied quantizers"


@pytest.mark.assets
def test_without_rules_concat_groups_mix_scales(built):
    """The check above is not vacuous: today's placement quantizes one group with several."""
    deploy, path, _, _ = built("yolov8n", "none")
    m = onnx.load(str(path))
    concats = G.concat_components(m)
    assert sum(len(s) > 1 for c, s in G.scales_by_component(m).items() if c in concats) >= 5
    assert "shared_scales" not in deploy.info


@pytest.mark.assets
@pytest.mark.parametrize("model", ["yolov8n", "yolov5n"])
def test_residual_identities_are_quantized_with_their_groups_scale(built, model):
    _, path, _, _ = built(model, "trt")
    m = onnx.load(str(path))
    adds = G.residual_adds(m)
    assert len(adds) == RESIDUAL_ADDS[model]
    made_by = {o: n for n in m.graph.node for o in n.output}
    comp, consts = G.components(m), G.constants(m)
    for add in adds:
        dq = next(made_by[i] for i in add.input if made_by.get(i) is not None
                  and made_by[i].op_type == "DequantizeLinear")  # fmt: skip
        q = made_by[dq.input[0]]
        assert q.op_type == "QuantizeLinear"
        scale = float(consts[q.input[1]].reshape(()))
        group = comp.get(q.input[0], q.input[0])
        assert G.scales_by_component(m)[group] == {scale}


@pytest.mark.assets
@pytest.mark.parametrize("model", ["yolov8n", "yolov5n"])
def test_the_shape_arithmetic_is_still_folded(built, model):
    _, path, _, _ = built(model, "trt")
    m = onnx.load(str(path))
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("Shape") == ops.count("Gather") == 0
    consts = {i.name for i in m.graph.initializer}
    assert all(set(n.input[1:]) <= consts for n in m.graph.node if n.op_type == "Slice")


@pytest.mark.assets
@pytest.mark.parametrize("model", ["yolov8n", "yolov5n"])
def test_onnx_runtime_runs_what_torch_fake_quant_computes(built, model):
    deploy, path, det, data = built(model, "trt")
    calls: list[float] = []
    hooks = [
        q.register_forward_hook(lambda mod, a, o: calls.append(float(mod.scale())))
        for q in deploy.module.modules()
        if isinstance(q, ActQuantizer) and q.enabled
    ]
    onnx_scales = [s for _, s in G.activation_scales(onnx.load(str(path)))]
    try:
        for b in list(data.batches(IMGSZ, 1, det.stride, rect=False))[:2]:
            x = np.ascontiguousarray(b.images)
            calls.clear()
            with torch.no_grad():
                want = det.raw(deploy.module(torch.from_numpy(x))).numpy()
            got = ort_run(path, x)
            # the same quantizers with bit-identical scales (the exporter may merge two Q/DQ
            # pairs of one tensor and scale, as tied quantizers of one input are)
            assert set(np.float32(onnx_scales)) == set(np.float32(calls))
            assert len(onnx_scales) <= len(calls)
            a, b_ = want.ravel().astype(np.float64), got.ravel().astype(np.float64)
            assert a @ b_ / (np.linalg.norm(a) * np.linalg.norm(b_)) > 0.9995
            assert np.median(np.abs(a - b_)) < 1e-3
    finally:
        for h in hooks:
            h.remove()


def test_tied_quantizers_are_one_module_with_one_range(tiny):
    """TinyYolo: model.2 reads a slice of cat(bottleneck out, model.0 out), which model.1's
    first conv and residual identity also read: one module for the three (and the head's two
    convs, which read one tensor, another)."""
    plan = prepare(tiny, [], rules="trt")
    group, head = plan.shared
    assert head.quantizers == ("model.3.box.input_quantizer", "model.3.cls.input_quantizer")
    assert set(group.quantizers) == {
        "model.1.cv1.conv.input_quantizer",
        "model.1.residual_quantizer",
        "model.2.conv.input_quantizer",
    }
    assert group.stats == ("model.1.cv1.conv", "model.2.conv")  # two distinct tensors read
    shared = tiny.model[2].conv.input_quantizer
    assert tiny.model[1].cv1.conv.input_quantizer is shared
    assert tiny.model[1].residual_quantizer is shared
    # a tied model's state dict loads into another tied one (AdaRound and QAT cache theirs)
    other = randomize_bn(TinyYolo(), seed=1)
    assert prepare(other, [], rules="trt").shared == plan.shared
    shared.set_amax(3.0)
    other.load_state_dict(tiny.state_dict())
    assert float(other.model[1].residual_quantizer.amax) == 3.0


def test_merged_histograms_keep_counts_and_the_widest_range():
    g = torch.Generator().manual_seed(0)
    a, b = HistStats(bins=256), HistStats(bins=256)
    a.update(torch.randn(10_000, generator=g))
    b.update(3 * torch.randn(10_000, generator=g))
    assert merge([a]) is a
    m = merge([a, b])
    assert m.range == max(a.range, b.range) and m.count == a.count + b.count
    assert m.amax == max(a.amax, b.amax)
    assert m.hist.sum() == pytest.approx(a.hist.sum() + b.hist.sum())
    # the narrow histogram's mass stays where its values are: below its own range
    wide = b if b.range > a.range else a
    narrow = a if wide is b else b
    below = m.edges[1:] <= narrow.range + m.range / m.bins
    assert m.hist[below].sum() >= narrow.hist.sum() - 1e-6


def test_trt_rules_need_the_residual_quantizers(compose):
    with pytest.raises(ConfigError, match="qdq_rules"):
        validate(compose(["quantizer=ptq", "quantizer.qdq_rules=trt", "quantizer.residual=false"]))


@pytest.mark.parametrize("quantizer", ["ptq_modelopt", "ptq_mqbench"])
def test_third_party_placements_refuse_the_rules(compose, quantizer):
    cfg = compose([f"quantizer={quantizer}", "quantizer.qdq_rules=trt"])
    why = combination_reason(validate(cfg))
    assert why is not None and "qdq_rules" in why


def test_the_rules_are_hashed_and_none_hashes_as_before(compose):
    base = config_hash(compose(["quantizer=ptq"]))
    assert config_hash(compose(["quantizer=ptq", "quantizer.qdq_rules=none"])) == base
    assert config_hash(compose(["quantizer=ptq", "quantizer.qdq_rules=trt"])) != base


# The GPU-verified placements (every yolov8n/yolov5n ptq_trt engine since the 4xH100 frontier
# built from these): activation Q/DQ pairs (conv inputs + residual identities), weight Q/DQ,
# nothing left float by the TensorRT rules. A change here must be a rule's, on purpose.
PINNED = {"yolov8n": (69, 63), "yolov5n": (60, 60)}


@pytest.mark.assets
@pytest.mark.parametrize("model", sorted(PINNED))
def test_the_gpu_verified_placement_count_is_pinned(built, model):
    from qexp.quant.qdq_census import census

    deploy, path, _, _ = built(model, "trt")
    c = census(path, deploy.info.get("float_by_rule"))
    assert (c.act_pairs, c.weight_qdq) == PINNED[model]
    assert c.by_rule == () and "float_by_rule" not in deploy.info
