"""Options added to a schema leave the config hash of every existing job unchanged while they
hold their default (``schema.added``): resume, equivalence and the index keep working across
the upgrade. The hashes below were computed at main 023f711, before ``quantizer.qdq_rules``;
change one only on purpose (say so in the commit: those jobs then run again)."""

from __future__ import annotations

import pytest

from qexp.runner import config_hash

BEFORE = [
    (["quantizer=none"], "d3df606b55303f7f"),
    (["quantizer=ptq"], "2e61d7698e16876f"),
    (["quantizer=ptq", "observer=mse", "model=yolov5n"], "57e0516e4f7376a2"),
    (["quantizer=adaround"], "2deb05e5a567be82"),
    (["quantizer=qat"], "732691884df12884"),
    (["quantizer=ptq_modelopt"], "581cd1988342e44f"),
    (["quantizer=ptq_mqbench"], "dfd54ed1a8311560"),
    (["quantizer=ptq", "ignore=sensitivity_topk", "ignore.k=3"], "d6d3415b5ca4b90c"),
]


@pytest.mark.parametrize(("overrides", "chash"), BEFORE, ids=[" ".join(o) for o, _ in BEFORE])
def test_existing_jobs_keep_their_config_hash(compose, overrides, chash):
    assert config_hash(compose(overrides)) == chash


def test_an_added_option_is_hashed_once_it_is_set(compose):
    assert config_hash(compose(["quantizer=ptq", "quantizer.qdq_rules=trt"])) != BEFORE[1][1]


def test_trained_model_cache_keys_leave_the_default_out(compose):
    from qexp.config.validate import validate
    from qexp.quant.model_cache import quantizer_key

    def key(*overrides):
        return quantizer_key(validate(compose(list(overrides))).quantizer)

    assert "qdq_rules" not in key("quantizer=qat")
    assert key("quantizer=qat", "quantizer.qdq_rules=trt")["qdq_rules"]
