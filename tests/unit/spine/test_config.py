"""Every YAML under conf/ composes against its typed schema; bad keys and values fail early."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from qexp.config.validate import ConfigError, validate
from tests.conftest import CONF

AXIS_FILES = sorted(
    (p.parent.name, p.stem)
    for p in CONF.glob("*/*.yaml")
    if p.parent.name not in ("experiment", "paper", "hydra", "launcher")
)
NAMED = sorted(p.stem for p in CONF.glob("experiment/*.yaml"))
PAPERS = sorted(p.stem for p in CONF.glob("paper/*.yaml"))


@pytest.mark.parametrize(("axis", "choice"), AXIS_FILES, ids=[f"{a}={c}" for a, c in AXIS_FILES])
def test_every_axis_file_composes(compose, axis, choice):
    cfg = compose([f"{axis}={choice}"])
    node = cfg[axis]
    assert node.name, f"conf/{axis}/{choice}.yaml sets no name"
    validate(cfg)


@pytest.mark.parametrize("name", NAMED)
def test_every_experiment_composes(compose, name):
    validate(compose([f"experiment={name}"]))


@pytest.mark.parametrize("name", PAPERS)
def test_every_paper_composes(compose, name):
    cfg = compose([f"paper={name}"])
    assert cfg.paper.cells, f"paper {name} has no reference numbers"


def test_misspelt_key_fails_at_compose(compose):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as e:
        compose(["quantizer.w_bitz=4"])
    assert "w_bitz" in str(e.value) or "w_bitz" in str(e.value.__cause__)


def test_wrong_type_fails_at_compose(compose):
    with pytest.raises((ConfigCompositionException, ValidationError)) as e:
        compose(["model.imgsz=big"])
    assert "imgsz" in str(e.value) + str(e.value.__cause__)


def test_unknown_choice_fails_at_compose(compose):
    with pytest.raises(ConfigCompositionException, match="observer"):
        compose(["observer=kl_magic"])


def test_unknown_observer_name_is_named(compose):
    cfg = compose(["observer.act=kl_magic"])
    with pytest.raises(ConfigError, match=r"observer\.act='kl_magic'"):
        validate(cfg)


def test_bad_value_is_named(compose):
    with pytest.raises(ConfigError, match="quantizer.precision"):
        validate(compose(["quantizer.precision=int3"]))


def test_added_unknown_nested_key_is_named_with_a_hint(compose):
    # `+` adds a key Hydra's schema lacks; validate() refuses it before any model loads
    cfg = compose(["+model.wieghts=x.pt"])
    with pytest.raises(ConfigError, match=r"model\.wieghts \(did you mean weights\?\)"):
        validate(cfg)


def test_preflight_refuses_unknown_top_level_keys_but_keeps_legitimate_additions():
    from qexp.preflight import UsageError, plan

    with pytest.raises(UsageError, match="did you mean observer"):
        plan(["+observr=minmax"])
    with pytest.raises(UsageError, match="did you mean seed"):
        plan(["-m", "sed=0,1"])
    # additions the project relies on (docs/scale-out.md), groups, deletions, hydra flags
    for argv in (
        ["-m", "+hydra.launcher.ray.init.num_cpus=2", "hydra/launcher=ray_gpus"],
        ["~hydra.callbacks.qexp_report", "experiment=baselines"],
        ["--cfg", "job", "model=yolov5n", "model.imgsz=320", "+experiment=baselines"],
    ):
        assert plan(argv).argv == argv
