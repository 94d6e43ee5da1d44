"""quantizer.export=dynamic_range with qdq_rules=trt on the real yolov8n at 320: every tensor
of a group joined through Concat, MaxPool, Slice/Split or Resize gets the one merged amax in
the JSON TensorRT applies with set_dynamic_range (so it can run the concat in place), the
JSON names only tensors of the fp32 ONNX, and qdq_rules=none writes what it always wrote."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from qexp.backends.trt_stage import float_islands
from qexp.job import Job
from qexp.quant.export import propagate_ranges, range_groups, strip_qdq
from qexp.registry import MODEL_FAMILIES, QUANTIZERS
from tests.unit.quant import qdq_graph as G

IMGSZ = 320


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """rules -> (deploy, fp32 ONNX, {tensor: amax}, the Q/DQ ONNX it came from), once each."""
    from hydra import compose, initialize_config_dir

    from qexp.config_store import register_configs
    from qexp.data import load_eval_data
    from tests.conftest import CONF

    register_configs()
    root = tmp_path_factory.mktemp("dr_groups")
    out: dict[str, tuple] = {}

    def get(rules: str, *extra: str):
        key = "+".join([rules, *extra])
        if key not in out:
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                cfg = compose("config", overrides=[
                    "quantizer=ptq_dr", "model=yolov8n", "data=tiny", f"model.imgsz={IMGSZ}",
                    "data.calib.num=2", "data.max_images=1", f"quantizer.qdq_rules={rules}",
                    f"paths.output_dir={root}", *extra,
                ])  # fmt: skip
            job = Job(cfg=cfg, dir=root / str(len(out)), cache_dir=root / "cache")
            det = MODEL_FAMILIES.get(cfg.model.family)(cfg.model, job)
            deploy = QUANTIZERS.build(job.settings.quantizer).quantize(
                job, det, load_eval_data(cfg.data, job)
            )
            fp32 = Path(deploy.export(job.dir / "onnx"))
            ranges = json.loads(Path(deploy.ranges(job.dir / "onnx")).read_text())
            qdq = next((job.dir / "onnx").glob("*_qdq.onnx"))
            out[key] = (deploy, fp32, ranges, qdq)
        return out[key]

    return get


@pytest.mark.assets
def test_every_tensor_of_a_concat_group_has_the_one_amax(exported):
    deploy, fp32, ranges, _ = exported("trt")
    m = onnx.load(str(fp32))
    comp = G.components(m)  # the test's own reading of the graph, not qexp's
    concats = G.concat_components(m)
    covered = 0
    for root in concats:
        group = [t for t, r in comp.items() if r == root]
        values = {ranges[t] for t in group if t in ranges}
        if not values:  # the head's concats: DFL and the box/class outputs stay float
            continue
        missing = [t for t in group if t not in ranges]
        assert not missing, f"tensors of a ranged Concat group without a range: {missing}"
        assert len(values) == 1, f"a Concat group with {len(values)} ranges: {sorted(values)}"
        covered += 1
    # yolov8n's ranged groups: 8 C2f blocks (cv1 output, its Slices, the bottleneck outputs,
    # the Concat), SPPF, and the neck's Concats, some joined with those through a Resize
    assert covered == 11
    assert deploy.info["shared_scales"]


@pytest.mark.assets
def test_the_onnx_groups_are_the_torch_groups(exported):
    """Tying changes no measured range: the tensors of one ONNX group were measured through
    one shared quantizer already (qdq_rules' torch groups), only the unmeasured ones gain it."""
    _, fp32, ranges, qdq = exported("trt")
    m, measured = strip_qdq(onnx.load(str(qdq)))
    for group in range_groups(m):
        assert len({measured[t] for t in group if t in measured}) <= 1, group
    assert all(ranges[t] == v for t, v in measured.items())
    assert len(ranges) > len(measured)


@pytest.mark.assets
def test_the_sppf_chain_and_the_c2f_splits_share_their_concats_range(exported):
    _, fp32, ranges, _ = exported("trt")
    m = onnx.load(str(fp32))
    for op in ("MaxPool", "Slice", "Resize"):  # C2f's chunk is two Slices after folding
        nodes = [n for n in m.graph.node if n.op_type == op]
        assert nodes, op
        for n in nodes:
            if n.input[0] not in ranges:  # DFL's Slices in the head: float
                continue
            assert {ranges[t] for t in [n.input[0], *n.output]} == {ranges[n.input[0]]}, n.name
    assert sum(n.op_type == "MaxPool" and n.input[0] in ranges for n in m.graph.node) == 3


@pytest.mark.assets
@pytest.mark.parametrize("rules", ["none", "trt"])
def test_the_json_names_only_tensors_of_the_fp32_onnx(exported, rules):
    _, fp32, ranges, _ = exported(rules)
    m = onnx.load(str(fp32))
    names = {o for n in m.graph.node for o in n.output} | {i.name for i in m.graph.input}
    inits = {i.name for i in m.graph.initializer}
    assert set(ranges) <= names
    assert not set(ranges) & inits  # weights: TensorRT's implicit INT8 quantizes them itself
    assert all(v > 0 for v in ranges.values())
    assert not [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


@pytest.mark.assets
def test_without_rules_the_json_is_what_it_was(exported):
    """qdq_rules=none: measured ranges carried onto neighbours only (no tying), as before;
    its Concat groups keep several ranges (so the check above is not vacuous)."""
    _, fp32, ranges, qdq = exported("none")
    m, measured = strip_qdq(onnx.load(str(qdq)))
    assert ranges == pytest.approx(propagate_ranges(m, measured), abs=0, rel=0)
    assert len(ranges) == 92  # qdq_rules=trt names the same 92 tensors, tied
    comp = G.components(onnx.load(str(fp32)))
    mixed = [
        r for r in G.concat_components(onnx.load(str(fp32)))
        if len({ranges[t] for t, c in comp.items() if c == r and t in ranges}) > 1
    ]  # fmt: skip
    assert len(mixed) >= 5


def test_groups_follow_the_data_inputs_only():
    """Constants (Slice bounds, Resize scales) never join a group; a linear Resize never
    joins (it makes new values)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    sc = numpy_helper.from_array(np.float32([1, 1, 2, 2]), "scales")
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Resize", ["x", "", "scales"], ["lin"], mode="linear"),
        helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[1, 1]),
        helper.make_node("Concat", ["p", "x"], ["c"], axis=1),
        helper.make_node("Add", ["up", "lin"], ["s"]),
        helper.make_node("Concat", ["c", "s"], ["y"], axis=1),
    ]
    g = helper.make_graph(nodes, "g", [x], [y], [sc])
    groups = range_groups(helper.make_model(g))
    assert [set(gr) for gr in groups] == [{"x", "up", "p", "c", "s", "y"}]


@pytest.mark.assets
def test_a_conv_and_silu_without_a_range_at_one_end_are_built_float(exported):
    """ptq_dr with layers kept float: a Conv + SiLU whose input or output has no range is
    named for a float build (TensorRT 8.6 found no kernel for either case: the H100 search of
    2026-12-07, these two float-layer sets). With every layer quantized nothing is named: the
    head's last convs and DFL (no SiLU) build as they always did."""

    def islands(*extra: str) -> list[str]:
        _, fp32, ranges, _ = exported(*extra)
        js = fp32.with_suffix(".ranges.json")
        js.write_text(json.dumps(ranges))
        return float_islands(fp32, js)

    assert islands("none") == islands("trt") == []
    silu = ["{}/conv/Conv", "{}/act/Sigmoid", "{}/act/Mul"]
    # model.1 float: model.0's output loses its range (its consumer is float) and model.1's
    # input too; model.2's cv1 still reads a range
    assert islands("none", "ignore.patterns=[model.1.conv]") == [
        s.format(m) for m in ("/model.0", "/model.1") for s in silu
    ]
    # the class branch's last conv float: the SiLU conv before it writes an unranged tensor
    assert islands("trt", "ignore.patterns=[model.22.cv3.0.2]") == [
        s.format("/model.22/cv3.0/cv3.0.1") for s in silu
    ]
