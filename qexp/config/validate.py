"""The config check every job passes right after composition, before any model loads."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from qexp.config.schema import OptionError
from qexp.config.settings import ConfigError, Settings, settings_of
from qexp.registry import BACKENDS, MODEL_FAMILIES, OBSERVERS, QUANTIZERS, TRACKERS, RegistryError

__all__ = ["ConfigError", "unknown_keys", "validate"]


def _check_name(option: str, value: str, registry) -> None:
    try:
        registry.entry(value)
    except RegistryError as e:
        raise ConfigError(f"{option}={value!r}: {e}") from None


def unknown_keys(node: Any, where: str = "") -> list[str]:
    """Keys of typed nodes that their schema does not have, each with a "did you mean" hint.

    Hydra refuses ``key=value`` for a key its schema lacks, but ``+key=value`` adds one to any
    node, so a misspelt ``+model.wieghts=...`` would compose and be ignored."""
    found: list[str] = []
    if isinstance(node, ListConfig):
        for i, item in enumerate(node):
            found += unknown_keys(item, f"{where}[{i}]")
        return found
    if not isinstance(node, DictConfig):
        return found
    typ = OmegaConf.get_type(node)
    fields = {f.name for f in dataclasses.fields(typ)} if dataclasses.is_dataclass(typ) else None
    for key in map(str, node):  # a typed node's keys are strings
        path = f"{where}.{key}" if where else key
        if fields is not None and key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            found.append(path + (f" (did you mean {close[0]}?)" if close else ""))
            continue
        if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
            continue
        found += unknown_keys(node[key], path)
    return found


def validate(cfg: DictConfig) -> Settings:
    """The job's typed settings; raises ConfigError naming the first bad option."""
    unknown = unknown_keys(cfg)
    if unknown:
        raise ConfigError(
            f"unknown config key {unknown[0]}"
            + (f" and {len(unknown) - 1} more" if len(unknown) > 1 else "")
        )
    _check_name("model.family", cfg.model.family, MODEL_FAMILIES)
    _check_name("quantizer.name", cfg.quantizer.name, QUANTIZERS)
    _check_name("backend.name", cfg.backend.name, BACKENDS)
    _check_name("tracking.name", cfg.tracking.name, TRACKERS)
    _check_name("observer.act", cfg.observer.act, OBSERVERS)
    _check_name("observer.weight", cfg.observer.weight, OBSERVERS)
    if cfg.ignore.rank_observer is not None:
        _check_name("ignore.rank_observer", cfg.ignore.rank_observer, OBSERVERS)
    settings = settings_of(cfg)  # every schema's bounds and rules
    for role in ("act", "weight"):  # each observer checks the parameters it reads
        observer = OBSERVERS.get(getattr(settings.observer, role))
        try:
            observer.params_of(settings.observer)
        except OptionError as e:
            raise ConfigError(f"observer.{e} (observer.{role}={observer.name})") from None
    return settings
