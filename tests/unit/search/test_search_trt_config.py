"""experiment=int8_search_trt as composed: what makes its trials cheap on one GPU."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from qexp.config.validate import validate
from qexp.quant.sensitivity import ranking_observer
from tests.conftest import CONF


def _composed(monkeypatch, tmp_path, *overrides, hydra=True):
    from qexp.config_store import register_configs

    monkeypatch.setenv("QEXP_GPU_COUNT", "1")
    monkeypatch.setenv("QEXP_JOBS_PER_GPU", "4")
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=["experiment=int8_search_trt", f"paths.output_dir={tmp_path}", *overrides],
            return_hydra_config=hydra,
        )


def test_trials_are_asked_two_pools_at_a_time(monkeypatch, tmp_path):
    # the launcher runs a pool's worth at once and starts the next trial as one ends; a batch of
    # one pool would make every slot wait for the batch's slowest build
    cfg = _composed(monkeypatch, tmp_path)
    launcher, sweeper = cfg.hydra.launcher, cfg.hydra.sweeper
    assert (launcher.n_jobs, sweeper.n_jobs) == (4, 8)
    # the first batch is the sampler's random start: batching it loses TPE nothing
    assert sweeper.n_startup_trials >= sweeper.n_jobs


def test_every_trial_ranks_with_the_hand_written_rows_observer(monkeypatch, tmp_path):
    # one sensitivity ranking for the whole search, the one the enqueued frontier row would
    # compute with its own observer: that row is still the frontier's recipe
    cfg = _composed(monkeypatch, tmp_path)
    (row,) = OmegaConf.to_container(cfg.hydra.sweeper.enqueue)
    trial = _composed(monkeypatch, tmp_path, *(f"{k}={v}" for k, v in row.items()), hydra=False)
    other = _composed(
        monkeypatch, tmp_path, "quantizer=ptq_dr", "observer=mse", "ignore=sensitivity_topk",
        hydra=False,
    )  # fmt: skip
    s_row, s_other = validate(trial), validate(other)
    assert ranking_observer(s_row) == s_row.observer
    assert ranking_observer(s_other) == s_row.observer != s_other.observer
