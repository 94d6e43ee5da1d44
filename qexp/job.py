"""The state one job accumulates while it runs: metrics, artifacts, info, caches."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig

from qexp.config.settings import Settings, settings_of
from qexp.progress import track

log = logging.getLogger("qexp")
T = TypeVar("T")


def content_hash(*parts: Any, n: int = 16) -> str:
    """A stable short hash of JSON-able parts (dicts are key-sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


@dataclass
class Job:
    cfg: DictConfig  # as composed (cache keys hash parts of it)
    dir: Path
    cache_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = field(default=None, init=False, repr=False)

    @property
    def settings(self) -> Settings:
        """The typed config plugins read (``cfg``'s schema objects, built once; the runner has
        validated ``cfg`` before the job starts)."""
        if self._settings is None:
            self._settings = settings_of(self.cfg)
        return self._settings

    def log_metrics(self, metrics: dict[str, float], prefix: str = "") -> None:
        for k, v in metrics.items():
            v = float(v)
            if not math.isfinite(v):
                log.warning("metric %s%s is %s; not recorded", prefix, k, v)
                continue
            self.metrics[prefix + k] = v

    def add_artifact(self, name: str, path: Path | str, copy: bool = False) -> Path:
        """Register a file (copied into the job dir when it lives elsewhere and copy=True)."""
        path = Path(path)
        if copy and not path.resolve().is_relative_to(self.dir.resolve()):
            dst = self.dir / "artifacts" / path.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst)
            path = dst
        try:
            rel = path.resolve().relative_to(self.dir.resolve())
            self.artifacts[name] = str(rel)
        except ValueError:
            self.artifacts[name] = str(path.resolve())
        return path

    def path(self, *parts: str) -> Path:
        """A path inside the job dir (parents created)."""
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def cache(self, kind: str, *key: Any) -> Path:
        """A content-addressed cache directory ``<cache_dir>/<kind>/<hash>`` (created)."""
        d = self.cache_dir / kind / content_hash(*key)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def track(self, it: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """A progress bar over ``it`` (rich on a terminal, periodic log lines otherwise)."""
        return track(it, description, total)
