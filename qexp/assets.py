"""Where the shared data and weights live, whatever the current directory.

``paths.assets`` is ``${qexp.assets:}``: ``$QEXP_ASSETS`` when set (a relative value is read
against the directory qexp was started from, as a shell user means it), else
``../shared/assets`` beside the repository holding this package. It never depends on the
directory a job happens to run in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

ENV = "QEXP_ASSETS"
RESOLVER = "qexp.assets"
REPO = Path(__file__).resolve().parents[1]


def assets_dir() -> str:
    env = os.environ.get(ENV)
    base = Path(env).expanduser() if env else REPO.parent / "shared" / "assets"
    return str(base.resolve())


def register_resolver() -> None:
    """Idempotent; done when qexp.config.schema is imported (every process that resolves one)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, assets_dir)


def _mentions(value: Any, root: str) -> bool:
    if isinstance(value, dict):
        return any(_mentions(v, root) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, root) for v in value)
    return isinstance(value, str) and value.startswith(root)


def check(cfg: Any) -> None:
    """Fail with a message naming QEXP_ASSETS when the job reads from a missing assets folder."""
    root = str(OmegaConf.select(cfg, "paths.assets"))
    if Path(root).is_dir():
        return
    used = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "data")}
    if _mentions(used, root):
        raise FileNotFoundError(
            f"the assets folder {root} does not exist: set {ENV} to the folder holding "
            "coco_val/, coco128/ and weights/ (or pass paths.assets=DIR); its default is "
            f"{REPO.parent / 'shared' / 'assets'}, beside the repository"
        )


def portable(value: Any, root: str) -> Any:
    """``value`` with the assets folder written ``${paths.assets}``: a config hash that does
    not change with where the assets (or the clone) live."""
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, root) for v in value]
    if isinstance(value, str) and (value == root or value.startswith(root + os.sep)):
        return "${paths.assets}" + value[len(root) :]
    return value
