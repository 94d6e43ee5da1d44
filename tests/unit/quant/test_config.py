"""The ptq configs compose against their schema; bad observer names fail before any work."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from qexp.config.validate import ConfigError, validate
from qexp.runner import combination_reason


def test_ptq_configs_compose(compose):
    cfg = compose(["quantizer=ptq", "observer=entropy", "ignore=head"])
    s = validate(cfg)
    assert s.quantizer.impl == "native" and s.quantizer.residual is True
    assert s.ignore.patterns == ["@head"]
    assert combination_reason(s) is None
    mo = validate(compose(["quantizer=ptq_modelopt", "observer=minmax"])).quantizer
    assert mo.impl == "modelopt" and mo.name == "ptq_modelopt" and mo.export == "qdq"
    mq = validate(compose(["quantizer=ptq_mqbench"])).quantizer
    assert mq.export == "dynamic_range" and mq.impl == "mqbench" and mq.name == "ptq_mqbench"


@pytest.mark.parametrize(("quantizer", "package", "extra"), [
    ("ptq_mqbench", "MQBench", "mqbench"), ("ptq_modelopt", "NVIDIA ModelOpt", "modelopt"),
])  # fmt: skip
def test_third_party_quantizers_skipped_when_missing(
    compose, monkeypatch, quantizer, package, extra
):
    """Without the optional library installed the job is SKIPPED with the install hint."""
    from qexp.quant.plugins import guard

    monkeypatch.setattr(guard, "find_spec", lambda name: None)
    reason = combination_reason(validate(compose([f"quantizer={quantizer}"])))
    assert f"needs {package}" in reason and f"pip install 'qexp[{extra}]'" in reason


def test_unknown_observer_fails_at_compose_time(compose):
    with pytest.raises(ConfigCompositionException):
        compose(["quantizer=ptq", "observer=kl_magic"])
    cfg = compose(["quantizer=ptq", "observer.act=kl_magic"])
    with pytest.raises(ConfigError, match=r"observer\.act='kl_magic'"):
        validate(cfg)


def test_unknown_ptq_key_fails(compose):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose(["quantizer=ptq", "quantizer.clip_ratio=0.9"])
