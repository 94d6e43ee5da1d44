"""The HTML report renders in headless Chromium (skips where no Chromium is installed)."""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
    reason="no Chromium (apt-get install -y chromium)",
)


def test_report_page_screenshot(tmp_path):
    from PIL import Image

    from qexp.report.build import build
    from qexp.report.load import from_records
    from tests.unit.report.conftest import OBSERVER_SWEEP, write_sweep

    sys.path.insert(0, str(ROOT / "scripts"))
    from screenshot import screenshot

    rep = build(from_records(write_sweep(tmp_path, OBSERVER_SWEEP)), "demo")
    page = rep.write(tmp_path / "report" / "report.html")[0]
    png = screenshot(str(page), tmp_path / "shot.png", size="1200,900", wait_ms=2000)
    with Image.open(png) as im:
        assert im.size == (1200, 900)
        # a rendered page: text, table rules and the plot give many colours, a blank one few
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20
