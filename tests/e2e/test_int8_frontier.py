"""experiment=int8_frontier: every quantizer as a TensorRT engine, one row per recipe. It
composes, every row is a distinct job that its quantizer accepts, and on a machine without
TensorRT (this one) every row is SKIPPED for that reason alone, in one real `qexp` command."""

from __future__ import annotations

import importlib.util

import pytest

from qexp.config.validate import validate
from qexp.record import SKIPPED, find_records, read_record
from qexp.runner import config_hash, plugins_of
from tests.conftest import CONF

ROWS = [
    "fp16", "trt_minmax", "trt_entropy2", "ptq_dr_minmax", "topk3", "topk5", "adaround", "qat",
    "modelopt_max",
    *[f"ptq{rules}_{o}" for rules in ("", "_trt") for o in ("minmax", "percentile", "mse", "entropy")],
    *[f"ptq_dr_trt_{o}" for o in ("minmax", "percentile", "mse")], "ptq_trt_split_minmax",
    "ptq_dr_trt_topk3",
]  # fmt: skip


def _recipes(compose) -> list[str]:
    cfg = compose(["experiment=int8_frontier"], return_hydra=True)
    return [r.strip() for r in str(cfg.hydra.sweeper.params.recipe).split(",")]


@pytest.fixture
def compose_h(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from qexp.config_store import register_configs

    register_configs()

    def _compose(overrides, return_hydra=False):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(
                config_name="config",
                overrides=[f"paths.output_dir={tmp_path}", *overrides],
                return_hydra_config=return_hydra,
            )

    return _compose


@pytest.mark.parametrize("model", ["yolov8n", "yolov5n"])
def test_each_row_is_one_distinct_job_its_quantizer_accepts(compose_h, model):
    recipes = _recipes(compose_h)
    assert sorted(recipes) == sorted(ROWS)
    assert sorted(recipes) == sorted(p.stem for p in CONF.glob("recipe/*.yaml"))
    hashes = set()
    for recipe in recipes:
        cfg = compose_h(["experiment=int8_frontier", f"model={model}", f"recipe={recipe}"])
        s = validate(cfg)
        assert s.backend.name == "tensorrt"
        quantizer, backend = plugins_of(s)
        out = quantizer.output()
        assert out in quantizer.produces and backend.accepts.refusal(out) is None, recipe
        why = quantizer.check(s)
        assert why is None or "needs NVIDIA ModelOpt" in why, f"{recipe}: {why}"
        hashes.add(config_hash(cfg))
    assert len(hashes) == len(recipes)  # no row repeats another


@pytest.mark.assets
def test_on_a_machine_without_tensorrt_every_row_is_skipped_for_that(qexp):
    p = qexp("experiment=int8_frontier", "data.max_images=2", timeout=300)
    records = [read_record(r) for r in find_records(qexp.out / "sweeps")]
    assert len(records) == len(ROWS)
    modelopt = importlib.util.find_spec("modelopt") is not None
    for r in records:
        assert r.status == SKIPPED, r
        if r.choices["quantizer"] == "ptq_modelopt" and not modelopt:
            assert r.reason.startswith("quantizer=ptq_modelopt needs NVIDIA ModelOpt")
        else:
            assert r.reason.startswith("TensorRT not available"), r.reason
    assert f"{len(ROWS)} SKIPPED" in p.stdout + p.stderr
