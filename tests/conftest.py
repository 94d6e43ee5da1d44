"""Shared fixtures: composed configs, isolated output dirs, the shared assets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("QEXP_ASSETS", ROOT.parent / "shared" / "assets")).resolve()
CONF = ROOT / "conf"
# a real job, made cheap: one image at 320, one timed iteration (the ONNX export is cached)
CHEAP_JOB = [
    "data=tiny",
    "data.max_images=1",
    "model.imgsz=320",
    "backend.warmup=0",
    "backend.iters=1",
    "backend.align=false",
    "backend.threads=1",
]

# ultralytics reads these at import: keep tests offline and out of the user's home
os.environ.setdefault("QEXP_HOME", str(ROOT / ".qexp-home"))
os.environ.setdefault("QEXP_ASSETS", str(ASSETS))
from qexp import offline  # noqa: E402

offline.setup()


def load_script(rel: str):
    """A script of the repo (``scripts/...py``, not a package module) imported as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(rel).stem, ROOT / rel)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pytest_collection_modifyitems(config, items):
    if not ASSETS.exists():
        skip = pytest.mark.skip(reason=f"shared assets not found at {ASSETS} (set QEXP_ASSETS)")
        for item in items:
            if "assets" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def assets() -> Path:
    if not ASSETS.exists():
        pytest.skip(f"shared assets not found at {ASSETS}")
    return ASSETS


@pytest.fixture
def compose(tmp_path):
    """compose(overrides) -> DictConfig, with outputs under tmp_path (``hydra=True``: with the
    ``hydra`` node, as a job sees it: launcher, sweeper)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from qexp.config_store import register_configs

    register_configs()

    def _compose(overrides=(), config_name="config", hydra=False):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(
                config_name=config_name,
                overrides=[f"paths.output_dir={tmp_path / 'outputs'}", *overrides],
                return_hydra_config=hydra,
            )

    return _compose
