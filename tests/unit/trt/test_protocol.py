"""The worker's request/response files and the TensorRT feature table (no TensorRT needed)."""

from __future__ import annotations

import json

import pytest

from qexp.trt import protocol
from qexp.trt.compat import unsupported_reason
from qexp.trt.worker import response_path

# what `python -m qexp.trt.worker --probe` reported for the staged TensorRT 8.6.0
TRT86 = {"fp16_flag": True, "int8_flag": True, "strongly_typed": False, "dynamic_range": True,
         "calibrators": ["entropy", "entropy2", "legacy", "minmax"], "opt_level": True,
         "io_tensors": True}  # fmt: skip
# TensorRT 11 dropped implicit INT8 and the precision flags; Q/DQ needs a strongly typed network
TRT11 = {"fp16_flag": False, "int8_flag": False, "strongly_typed": True, "dynamic_range": False,
         "calibrators": [], "opt_level": True, "io_tensors": True}  # fmt: skip


def test_request_round_trip(tmp_path):
    req = protocol.Request(onnx="/m.onnx", engine="/e.plan", out_dir="/o", precision="int8",
                           route="trt_builtin", calibrator="entropy2", calib_dir="/c")  # fmt: skip
    req.validate()
    protocol.write(req, str(tmp_path / "r.json"))
    assert protocol.read(protocol.Request, str(tmp_path / "r.json")) == req
    assert response_path(str(tmp_path / "r.json")) == str(tmp_path / "r.response.json")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"precision": "int4"}, "precision"),
        ({"route": "qdq"}, "route"),  # an int8 route at fp32
        ({"precision": "int8"}, "precision"),  # int8 needs a route
        ({"precision": "int8", "route": "trt_builtin", "calibrator": "percentile"}, "calibrator"),
        ({"precision": "int8", "route": "dynamic_range"}, "dynamic_range"),
        ({"precision": "int8", "route": "qdq", "float_layers": ["/c"]}, "float_layers"),
        ({"batch_sizes": [32, 1]}, "batch_sizes"),
        ({"eval_input": "/x.npy", "eval_batch": 8}, "eval_batch"),
    ],
)
def test_bad_requests_name_the_key(change, key):
    req = protocol.Request(onnx="/m.onnx", engine="/e.plan", out_dir="/o", **change)
    with pytest.raises(protocol.ProtocolError, match=rf"request\.{key}="):
        req.validate()


def test_unknown_keys_are_refused(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"onnx": "a", "engine": "b", "out_dir": "c", "precison": "fp16"}))
    with pytest.raises(protocol.ProtocolError, match="precison"):
        protocol.read(protocol.Request, str(p))


def test_feature_table_for_8_6_and_11():
    for precision, route, cal in [("fp32", "float", None), ("fp16", "float", None),
                                  ("int8", "qdq", None), ("int8", "dynamic_range", None),
                                  ("int8", "trt_builtin", "entropy2"),
                                  ("int8", "trt_builtin", "legacy")]:  # fmt: skip
        assert unsupported_reason(TRT86, precision, route, cal, "8.6.0") is None
    assert unsupported_reason(TRT11, "int8", "qdq", None, "11.0") is None
    assert unsupported_reason(TRT11, "fp32", "float", None, "11.0") is None
    why = unsupported_reason(TRT11, "int8", "trt_builtin", "entropy2", "11.0")
    assert why.startswith("TensorRT 11.0 has no implicit INT8")
    assert "export=qdq" in unsupported_reason(TRT11, "int8", "dynamic_range", None, "11.0")
    assert "FP16" in unsupported_reason(TRT11, "fp16", "float", None, "11.0")
    no_legacy = dict(TRT86, calibrators=["entropy2", "minmax"])
    assert "IInt8LegacyCalibrator" in unsupported_reason(
        no_legacy, "int8", "trt_builtin", "legacy", "10.9"
    )
