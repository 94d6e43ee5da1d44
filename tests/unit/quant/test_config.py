"""The ptq configs compose against their schema; bad observer names fail before any work."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from qexp.config.validate import ConfigError, validate
from qexp.registry import QUANTIZERS


def test_ptq_configs_compose(compose):
    cfg = compose(["quantizer=ptq", "observer=entropy", "ignore=head"])
    validate(cfg)
    assert cfg.quantizer.impl == "native" and cfg.quantizer.residual is True
    assert list(cfg.ignore.patterns) == ["@head"]
    assert QUANTIZERS.get("ptq")().check(cfg) is None
    mo = compose(["quantizer=ptq_modelopt", "observer=minmax"])
    assert mo.quantizer.impl == "modelopt" and mo.quantizer.name == "ptq"
    mq = compose(["quantizer=ptq_mqbench"])
    assert mq.quantizer.export == "dynamic_range" and mq.quantizer.impl == "mqbench"


def test_mqbench_skipped_when_missing(compose, monkeypatch):
    """Without MQBench installed the job is SKIPPED with the install hint."""
    from qexp.quant import mqbench_ptq

    monkeypatch.setattr(mqbench_ptq, "find_spec", lambda name: None)
    reason = QUANTIZERS.get("ptq")().check(compose(["quantizer=ptq_mqbench"]))
    assert "needs MQBench" in reason and "pip install 'qexp[mqbench]'" in reason


def test_unknown_observer_fails_at_compose_time(compose):
    with pytest.raises(ConfigCompositionException):
        compose(["quantizer=ptq", "observer=kl_magic"])
    cfg = compose(["quantizer=ptq", "observer.act=kl_magic"])
    with pytest.raises(ConfigError, match=r"observer\.act='kl_magic'"):
        validate(cfg)


def test_unknown_ptq_key_fails(compose):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose(["quantizer=ptq", "quantizer.clip_ratio=0.9"])
