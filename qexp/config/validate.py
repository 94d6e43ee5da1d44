"""Checks that need the registries, run right after composition (before any model loads)."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from qexp.device import check_device
from qexp.registry import BACKENDS, MODEL_FAMILIES, OBSERVERS, QUANTIZERS, TRACKERS, RegistryError

PRECISIONS = ("fp32", "fp16", "int8")
EXPORTS = ("qdq", "dynamic_range", "none")
CALIBRATORS = ("none", "minmax", "entropy", "entropy2", "legacy")
SENSITIVITY_METRICS = ("map", "mse", "cosine", "sqnr")


class ConfigError(ValueError):
    """A config value that composes but cannot work; the message names the option."""


def _check_name(option: str, value: str, registry) -> None:
    try:
        registry.entry(value)
    except RegistryError as e:
        raise ConfigError(f"{option}={value!r}: {e}") from None


def _check_choice(option: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{option}={value!r}: must be one of {', '.join(allowed)}")


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


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad option."""
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
    _check_choice("quantizer.precision", cfg.quantizer.precision, PRECISIONS)
    _check_choice("quantizer.export", cfg.quantizer.export, EXPORTS)
    _check_choice("calibrator.name", cfg.calibrator.name, CALIBRATORS)
    _check_choice("ignore.metric", cfg.ignore.metric, SENSITIVITY_METRICS)
    why = check_device(str(OmegaConf.select(cfg, "quantizer.device", default="auto")))
    if why:
        raise ConfigError(why)
    for opt in ("quantizer.w_bits", "quantizer.a_bits"):
        bits = OmegaConf.select(cfg, opt)
        if not 2 <= int(bits) <= 16:
            raise ConfigError(f"{opt}={bits}: must be between 2 and 16")
    if not 0 < float(cfg.observer.percentile) <= 100:
        raise ConfigError(f"observer.percentile={cfg.observer.percentile}: must be in (0, 100]")
    if int(cfg.model.imgsz) % 32:
        raise ConfigError(f"model.imgsz={cfg.model.imgsz}: must be a multiple of 32")
    if cfg.data.max_images is not None and int(cfg.data.max_images) < 1:
        raise ConfigError(f"data.max_images={cfg.data.max_images}: must be >= 1 or null")
