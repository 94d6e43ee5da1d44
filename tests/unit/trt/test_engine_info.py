"""Layer-info parsing on real inspector JSON recorded from TensorRT 8.6 on an H200."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qexp.trt import engine_info as ei

FIX = Path(__file__).parent / "fixtures"
MODES = ("fp32", "fp16", "int8_entropy2", "int8_minmax", "qdq")

# Counted by hand from the fixture files (first input's datatype per layer; constants have none)
# and cross-checked against summary.json's layer counts, which the recording script wrote.
EXPECTED = {
    "fp32": {"precisions": {"fp32": 26}, "reformat": {"CAST": 1, "CONCAT": 1, "REFORMAT": 1}},
    "fp16": {
        "precisions": {"fp16": 21, "fp32": 1},
        "reformat": {"CAST": 2, "CONCAT": 1, "REFORMAT": 2},
    },
    "int8_entropy2": {
        "precisions": {"int8": 11, "fp32": 5},
        "reformat": {"CAST": 2, "CONCAT": 1, "REFORMAT": 1},
    },
    "int8_minmax": {
        "precisions": {"int8": 11, "fp32": 5},
        "reformat": {"CONCAT": 1, "REFORMAT": 1},
    },
    "qdq": {"precisions": {"int8": 11, "fp32": 3}, "reformat": {"CONCAT": 1, "QDQ": 1}},
}


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads((FIX / "summary.json").read_text())


@pytest.mark.parametrize("mode", MODES)
def test_summary_counts_match_the_file(mode, recorded):
    info = ei.load(FIX / f"layers_{mode}.json")
    s = ei.summarize(info)
    assert s.layers_total == recorded[mode]["layers"]
    assert s.precisions == EXPECTED[mode]["precisions"]
    assert s.reformat_by_origin == EXPECTED[mode]["reformat"]
    assert s.reformat_layers == sum(EXPECTED[mode]["reformat"].values())
    assert s.layer_types["Constant"] == 4  # the four bias constants of the net
    assert s.bindings == ["images", "out"]
    m = s.metrics()
    assert m["layers_total"] == recorded[mode]["layers"]
    for p in ("int8", "fp16", "fp32"):
        assert m[f"layers_{p}"] == EXPECTED[mode]["precisions"].get(p, 0)


def test_int8_engines_run_their_convolutions_in_int8():
    for mode in ("int8_entropy2", "int8_minmax", "qdq"):
        rows = ei.layer_table(ei.load(FIX / f"layers_{mode}.json"))
        convs = [r for r in rows if r["type"] == "Convolution"]
        assert len(convs) == 9 and all(r["precision"] == "int8" for r in convs), mode
    fp16 = ei.layer_table(ei.load(FIX / "layers_fp16.json"))
    assert {r["precision"] for r in fp16 if r["type"] == "Convolution"} == {"fp16"}


def test_qdq_reformat_is_the_input_quantize():
    rows = ei.layer_table(ei.load(FIX / "layers_qdq.json"))
    (q,) = [r for r in rows if r["origin"] == "QDQ"]
    assert q["name"] == "/stem/stem.0/c/QuantizeLinear"
    assert "FP32" in q["inputs"] and "Int8" in q["outputs"]


def test_layer_table_joins_profile_times_and_writes_csv():
    info = ei.load(FIX / "layers_qdq.json")
    names = [L["Name"] for L in info["Layers"]]
    profile = {"batch": 1, "iters": 2, "layers": [{"name": names[7], "ms": 0.0123}]}
    rows = ei.layer_table(info, ei.profile_times(profile))
    assert len(rows) == len(names)
    assert rows[7]["ms"] == 0.0123 and rows[0]["ms"] == ""
    text = ei.to_csv(rows)
    assert text.splitlines()[0].startswith("index,name,type,kernel,precision")
    assert len(text.splitlines()) == len(names) + 1
    md = ei.to_markdown(ei.summarize(info))
    assert "int8 11" in md and "QDQ 1" in md


def test_raw_control_characters_are_accepted(tmp_path):
    # TensorRT can put raw control characters (e.g. record separators) inside strings
    text = (FIX / "layers_fp32.json").read_text()
    text = text.replace(
        '"Metadata": "[ONNX Layer: /Concat]"', '"Metadata": "[ONNX Layer: /Concat]\x1e\x01"'
    )
    assert "\x1e" in text
    p = tmp_path / "layers.json"
    p.write_text(text)
    with pytest.raises(ValueError):
        json.loads(text)
    assert ei.summarize(ei.load(p)).layers_total == 30


def test_multi_profile_names_are_split_by_profile():
    info = ei.load(FIX / "layers_fp16.json")
    second = [dict(L, Name=f"{L['Name']} [profile 1]") for L in info["Layers"]]
    both = {"Layers": info["Layers"] + second, "Bindings": info["Bindings"]}
    assert ei.summarize(both, profile=0).layers_total == 26
    assert ei.summarize(both, profile=1).precisions == ei.summarize(info).precisions
    assert ei.summarize(both, profile=None).layers_total == 52


def test_datatype_words():
    assert ei.datatype("Row major linear BFloat16 format") == "bf16"
    assert ei.datatype("Channel major FP16 format where channel % 8 == 0") == "fp16"
    assert ei.datatype("Row major linear FP32") == "fp32"
    assert ei.datatype("Row major linear UInt8 format") == "uint8"
    assert ei.datatype("Channel major INT8 format where channel % 16 == 0") == "int8"
    assert ei.datatype("Half") == "fp16" and ei.datatype("Float") == "fp32"


def test_not_inspector_json_names_the_file(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"foo": 1}')
    with pytest.raises(ValueError, match="x.json"):
        ei.load(p)


def test_yolov8n_engine_from_our_worker_holds_both_profiles():
    """Recorded by qexp's worker (TensorRT 8.6.0, H100, yolov8n fp32, profiles b1 and b32):
    the inspector reports every profile, the second one's names suffixed '[profile 1]'."""
    from qexp.backends.tensorrt import summary_profile

    info = ei.load(FIX / "yolov8n_fp32_h100_b1.json")
    assert len(info["Layers"]) == 445
    assert summary_profile(info, 1) == 1
    b1, b32 = ei.summarize(info, 0), ei.summarize(info, 1)
    assert (b1.layers_total, b1.precisions, b1.reformat_by_origin) == (
        234,
        {"fp32": 231},
        {"CONCAT": 33},
    )
    assert (b32.layers_total, b32.precisions, b32.reformat_layers) == (211, {"fp32": 208}, 49)
    assert b1.layer_types["Convolution"] == b32.layer_types["Convolution"] == 61
    first = next(L for L in ei.layers(info, 1) if L.get("Inputs"))
    assert first["Inputs"][0]["Dimensions"][0] == 32  # the batch-32 profile
    single = {"Layers": ei.layers(info, 0), "Bindings": ["images", "output0"]}
    assert summary_profile(single, 1) is None  # a per-context JSON: all of it is that profile
