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
    if p.parent.name not in ("experiment", "paper", "hydra", "launcher", "recipe")
)
NAMED = sorted(p.stem for p in CONF.glob("experiment/*.yaml"))
PAPERS = sorted(p.stem for p in CONF.glob("paper/*.yaml"))
RECIPES = sorted(p.stem for p in CONF.glob("recipe/*.yaml"))


@pytest.mark.parametrize(("axis", "choice"), AXIS_FILES, ids=[f"{a}={c}" for a, c in AXIS_FILES])
def test_every_axis_file_composes(compose, axis, choice):
    cfg = compose([f"{axis}={choice}"])
    node = cfg[axis]
    assert node.name, f"conf/{axis}/{choice}.yaml sets no name"
    validate(cfg)


@pytest.mark.parametrize("name", NAMED)
def test_every_experiment_composes(compose, name):
    validate(compose([f"experiment={name}"]))


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_composes(compose, name):
    validate(compose([f"recipe={name}"]))


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


def config_error(compose, overrides: list[str]) -> str:
    """The message a bad config fails with, at compose time (a choice or type Hydra refuses)
    or at validate time (a bound or rule of a schema), before any model loads."""
    try:
        cfg = compose(overrides)
    except (ConfigCompositionException, ValidationError, ConfigKeyError) as e:
        return f"{e} {e.__cause__}"
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    return str(err.value)


def test_bad_value_is_named(compose):
    msg = config_error(compose, ["quantizer.precision=int3"])
    assert "quantizer.precision" in msg and "fp32, fp16, int8" in msg


# Each of these was found only at run time (or not at all) before the typed schemas.
BAD_OPTIONS = [
    (["quantizer=ptq", "ignore=sensitivity_topk", "ignore.k=-1"], "ignore.k=-1: must be >= 0"),
    (["quantizer=ptq", "ignore=sensitivity_topk", "ignore.images=0"], "ignore.images=0"),
    (["ignore.mode=bogus"], "ignore.mode"),
    (["ignore.metric=l1"], "ignore.metric"),
    (
        ["observer=percentile", "observer.percentile=120"],
        "observer.percentile=120.0: must be <= 100",
    ),
    (["observer.weight=percentile", "observer.percentile=0"], "observer.percentile=0.0"),
    (["observer=entropy", "observer.quant_bins=4096"], "observer.quant_bins=4096: must be < bins"),
    (["observer=histogram", "observer.bins=64"], "observer.bins=64: must be >= 128"),
    (["backend=onnxruntime", "backend.graph_optimization=max"], "backend.graph_optimization"),
    (["backend=tensorrt", "backend.format_filter=fast"], "backend.format_filter"),
    (["backend=tensorrt", "backend.tactic_sources=[CUDNN,CUBLAZ]"], "backend.tactic_sources"),
    (["backend=tensorrt", "backend.eval_batch=8"], "backend.eval_batch=8: must be one of"),
    (["backend=tensorrt", "backend.opt_level=7"], "backend.opt_level=7: must be <= 5"),
    (["backend=tensorrt", "backend.log_level=loud"], "backend.log_level"),
    (["backend.iters=0"], "backend.iters=0: must be >= 1"),
    (["quantizer=adaround", "quantizer.iters=-1"], "quantizer.iters=-1"),
    (["quantizer=adaround", "quantizer.warmup=1.0"], "quantizer.warmup=1.0: must be < 1"),
    (["quantizer=qat", "quantizer.loss=bogus"], "quantizer.loss"),
    (["quantizer=qat", "quantizer.bn=train"], "quantizer.bn"),
    (["quantizer=qat", "quantizer.epochs=0"], "quantizer.epochs=0"),
    (["quantizer=ptq", "quantizer.impl=modelopt"], "quantizer=ptq_modelopt"),
    (["quantizer.device=gpu"], "quantizer.device='gpu'"),
    (["quantizer.w_bits=1"], "quantizer.w_bits=1: must be >= 2"),
    (["model.imgsz=100"], "model.imgsz=100: must be a multiple of 32"),
    (["data.batch=0"], "data.batch=0"),
    (["calibrator.name=kl"], "calibrator.name"),
]


@pytest.mark.parametrize(("overrides", "named"), BAD_OPTIONS, ids=[o[-1] for o, _ in BAD_OPTIONS])
def test_bad_options_fail_before_any_work_naming_the_option(compose, overrides, named):
    assert named in config_error(compose, overrides)


def test_validate_gives_the_typed_settings(compose):
    from qexp.config.schema import Metric
    from qexp.quant.adaround import AdaRoundConfig

    s = validate(compose(["quantizer=adaround", "ignore=sensitivity_topk", "ignore.k=2"]))
    assert isinstance(s.quantizer, AdaRoundConfig) and s.quantizer.iters == 2000
    assert s.ignore.k == 2 and s.ignore.metric == Metric.mse == "mse"
    assert s.model.imgsz == 640 and isinstance(s.data.calib.num, int)


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
