"""The one registry pattern for everything pluggable in qexp.

A plugin registers under a kind (``quantizer``, ``observer``, ``backend``, ``model_family``,
``tracking``) and a name. Plugins that are selected through a Hydra config group also give a
dataclass ``schema``; :mod:`qexp.config_store` puts those schemas into Hydra's ConfigStore, so
a new plugin is one file plus one YAML. :func:`qexp.plugins.load_plugins` imports the plugin
modules; this module imports nothing of qexp's, so every plugin can import it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Unknown or duplicate plugin name."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    schema: type | None


class Registry(Generic[T]):
    """Name -> plugin. Duplicate names are errors; unknown names list the close ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, schema: type | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries:
                raise RegistryError(f"duplicate {self.kind} name {name!r}")
            self._entries[name] = Entry(name, obj, schema)
            return obj

        return deco

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def build(self, cfg: Any) -> Any:
        """The plugin ``cfg.name`` names, constructed with ``cfg`` (its typed config)."""
        return self.get(cfg.name)(cfg)  # type: ignore[operator]

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            if not self._entries:
                hint = "; none is loaded: call qexp.plugins.load_plugins() first"
            raise RegistryError(
                f"unknown {self.kind} {name!r} (known: {', '.join(sorted(self._entries))}){hint}"
            ) from None

    def remove(self, name: str) -> None:
        """Forget a plugin (tests that register their own clean up with this)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(list(self._entries.values()))


QUANTIZERS: Registry[Any] = Registry("quantizer")
OBSERVERS: Registry[Any] = Registry("observer")
BACKENDS: Registry[Any] = Registry("backend")
MODEL_FAMILIES: Registry[Any] = Registry("model family")
TRACKERS: Registry[Any] = Registry("tracking sink")
