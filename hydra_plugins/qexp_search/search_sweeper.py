"""The Hydra plugin face of qexp's recipe search (Hydra instantiates sweepers only from the
``hydra_plugins`` namespace). Hydra imports this module at every start while it scans for
plugins, so the search (Optuna, the Optuna sweeper) is imported only when one is asked for."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SearchSweeper(Sweeper):
    """``hydra/sweeper=qexp_search``: see qexp/search/sweeper.py."""

    def __init__(self, **options: Any) -> None:
        from qexp.search.sweeper import Search

        self.search = Search(**options)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(arguments)
