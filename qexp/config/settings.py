"""One job's config as typed objects: each axis an instance of its plugin's schema.

:func:`settings_of` builds them from a composed config (``OmegaConf.to_object``, so each
schema's bounds and rules run); ``validate`` does it for every job before any model loads, and
plugins read these objects instead of the DictConfig (no casts, no re-checking at the point of
use). A plugin whose schema extends its axis's gets its own subclass here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from qexp.config import schema as s
from qexp.registry import BACKENDS, MODEL_FAMILIES, OBSERVERS, QUANTIZERS, TRACKERS, Registry


class ConfigError(ValueError):
    """A config value that composes but cannot work; the message names the option."""


# The schema of each axis, and the registry whose plugins may extend it with their own.
BASE_SCHEMAS: dict[str, type] = {
    "model": s.ModelConfig,
    "data": s.DataConfig,
    "quantizer": s.QuantizerConfig,
    "observer": s.ObserverConfig,
    "calibrator": s.CalibratorConfig,
    "ignore": s.IgnoreConfig,
    "backend": s.BackendConfig,
    "tracking": s.TrackingConfig,
    "paper": s.PaperConfig,
}
PLUGIN_AXES: dict[str, Registry] = {
    "model": MODEL_FAMILIES,
    "quantizer": QUANTIZERS,
    "observer": OBSERVERS,  # an observer with options of its own extends ObserverConfig
    "backend": BACKENDS,
    "tracking": TRACKERS,
}


@dataclass
class Settings:
    """The typed config of one job (what plugins read)."""

    model: s.ModelConfig
    data: s.DataConfig
    quantizer: s.QuantizerConfig
    observer: s.ObserverConfig
    calibrator: s.CalibratorConfig
    ignore: s.IgnoreConfig
    backend: s.BackendConfig
    tracking: s.TrackingConfig
    paths: s.PathsConfig
    seed: int = 0


def schema_for(axis: str, name: str | None) -> type:
    """The schema a config node of ``axis`` named ``name`` extends (a plugin's, else the axis's)."""
    registry = PLUGIN_AXES.get(axis)
    if registry is not None and name in registry:
        schema = registry.entry(str(name)).schema
        if schema is not None:
            return schema
    return BASE_SCHEMAS[axis]


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def drop_added_defaults(axis: str, node: dict[str, Any]) -> dict[str, Any]:
    """``node`` (a plain dict of one axis) without the fields its schema marks ``added`` that
    hold their default: what hashes (config hash, cache keys) must leave out so that jobs
    recorded before the field existed keep theirs."""
    if axis not in BASE_SCHEMAS:
        return node
    schema = schema_for(axis, node.get("name"))
    drop = {
        f.name
        for f in dataclasses.fields(schema)
        if f.metadata.get("added") and f.name in node and _plain(node[f.name]) == _plain(f.default)
    }
    return {k: v for k, v in node.items() if k not in drop}


def typed(axis: str, node: Any) -> Any:
    """The schema object of one composed axis node (ConfigError names the option)."""
    try:
        return OmegaConf.to_object(node)
    except s.OptionError as e:
        raise ConfigError(f"{axis}.{e}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{axis}: {str(e).splitlines()[0]} ({e.full_key or axis})") from None


def as_composed(cfg: DictConfig) -> DictConfig:
    """A config that was not composed (a config.yaml read back, a test's dict) typed as Hydra
    would have: the top level by ``Config``, each axis by its schema (chosen by its name)."""
    root = OmegaConf.structured(s.Config)
    for key in cfg:
        node = cfg[key]
        if key in BASE_SCHEMAS and isinstance(node, DictConfig):
            schema = schema_for(str(key), node.get("name"))
            node = OmegaConf.merge(OmegaConf.structured(schema), node)
        root[key] = node
    return root


def settings_of(cfg: DictConfig) -> Settings:
    """Every axis of ``cfg`` as its schema object (raises ConfigError naming the option)."""
    if not dataclasses.is_dataclass(OmegaConf.get_type(cfg)):
        try:
            cfg = as_composed(cfg)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{str(e).splitlines()[0]} ({e.full_key})") from None
    axes = {axis: typed(axis, cfg[axis]) for axis in BASE_SCHEMAS if axis != "paper"}
    return Settings(**axes, paths=typed("paths", cfg.paths), seed=cfg.seed)
