"""Headless Chromium for the view tests: scripts/cdp.py's DevTools driver, skipped cleanly
where no Chromium is installed (`.ci/run` installs one with apt where it can)."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FOUND = next((p for b in BROWSERS if (p := shutil.which(b))), None)
needs_chromium = pytest.mark.skipif(
    FOUND is None, reason="no Chromium (apt-get install -y chromium)"
)
# `QEXP_UPDATE_SCREENSHOTS=1 pytest tests/e2e/test_mlflow_ui.py` rewrites docs/img/ from the run
UPDATE_ENV = "QEXP_UPDATE_SCREENSHOTS"
DOCS_IMG = ROOT / "docs" / "img"

if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator:
    """A headless Chromium page of this size, driven over the DevTools pipe."""
    from cdp import Chromium

    assert FOUND is not None
    with tempfile.TemporaryDirectory(prefix="qexp-chromium-") as profile:
        chrome = Chromium(FOUND, profile, width, height)
        try:
            yield chrome
        finally:
            chrome.close()


def shoot(chrome, out: Path) -> Path:
    """The page as a small (palette) PNG at ``out``."""
    from screenshot import shrink

    raw = chrome.screenshot(out.with_suffix(".raw.png"))
    shrink(raw, out)
    raw.unlink()
    return out
