"""experiment=int8_search_trt as composed: what makes its trials cheap on one GPU."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from qexp.config.validate import validate
from qexp.quant.sensitivity import ranking_observer


@pytest.fixture
def search(compose, monkeypatch):
    """experiment=int8_search_trt composed on one GPU with a build pool of 4."""
    monkeypatch.setenv("QEXP_GPU_COUNT", "1")
    monkeypatch.setenv("QEXP_JOBS_PER_GPU", "4")
    return lambda *overrides, hydra=True: compose(
        ["experiment=int8_search_trt", *overrides], hydra=hydra
    )


def test_trials_are_asked_two_pools_at_a_time(search):
    # the launcher runs a pool's worth at once and starts the next trial as one ends; a batch of
    # one pool would make every slot wait for the batch's slowest build
    cfg = search()
    launcher, sweeper = cfg.hydra.launcher, cfg.hydra.sweeper
    assert (launcher.n_jobs, sweeper.n_jobs) == (4, 8)
    # the first batch is the sampler's random start: batching it loses TPE nothing
    assert sweeper.n_startup_trials >= sweeper.n_jobs


def test_every_trial_ranks_with_the_hand_written_rows_observer(search):
    # one sensitivity ranking for the whole search, the one the enqueued frontier row would
    # compute with its own observer: that row is still the frontier's recipe
    (row,) = OmegaConf.to_container(search().hydra.sweeper.enqueue)
    trial = search(*(f"{k}={v}" for k, v in row.items()), hydra=False)
    other = search("quantizer=ptq_dr", "observer=mse", "ignore=sensitivity_topk", hydra=False)
    s_row, s_other = validate(trial), validate(other)
    assert ranking_observer(s_row) == s_row.observer
    assert ranking_observer(s_other) == s_row.observer != s_other.observer
