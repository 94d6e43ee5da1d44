"""An observer from outside qexp: one module (this) plus one YAML (conf/observer/toy.yaml).

``observer=toy`` clips activations at ``fraction`` of their largest magnitude; it has an
option of its own, so it extends the observer axis's schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from qexp.config.schema import Checked, ObserverConfig, bounded
from qexp.quant.observers import Observer
from qexp.registry import OBSERVERS


@dataclass
class ToyObserverConfig(ObserverConfig):
    fraction: float = 0.5  # the option and its default, in the axis schema only


@dataclass
class ToyParams(Checked):
    fraction: float = bounded(gt=0, le=1)  # what this observer reads, and the values it takes


@OBSERVERS.register("toy", schema=ToyObserverConfig)
class Toy(Observer):
    name = "toy"
    weights = False  # activations only
    params = ToyParams

    def act_amax(self, st, cfg, bits):
        return cfg.fraction * st.amax
