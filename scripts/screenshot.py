"""Screenshot a page (a report file or the MLflow UI) with headless Chromium, as a small PNG.

    python scripts/screenshot.py outputs/sweeps/x/report/report.html docs/img/report.png
    python scripts/screenshot.py http://127.0.0.1:5055/#/experiments/1 docs/img/mlflow.png \
        --wait-ms 15000 --size 1400,900

Chromium renders the page (JavaScript included, for up to --wait-ms of virtual time), then
the PNG is reduced to a 256-colour palette so README images stay small (~100-300 KB).
With --js, the page is driven over the DevTools protocol instead (scripts/cdp.py): each
--js snippet runs in the page after it loaded (click a tab, expand a row), then the shot.
`clickText("Model training")` is predefined for the snippets.
Install Chromium with `apt-get install -y chromium` (Debian) where it is missing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cdp import HEADLESS_FLAGS

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        f"no Chromium found (tried {', '.join(BROWSERS)}); install it: apt-get install -y chromium"
    )


def screenshot(url: str, out: Path, size: str = "1400,1800", wait_ms: int = 5000) -> Path:
    """Render ``url`` headless and write a PNG to ``out``."""
    if "://" not in url:
        path = Path(url).resolve()
        if not path.exists():
            raise SystemExit(f"no such file: {path}")
        url = path.as_uri()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qexp-chromium-") as profile:
        raw = Path(profile) / "shot.png"
        cmd = [
            browser(),
            *HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            f"--virtual-time-budget={wait_ms}",  # let the page's JavaScript finish rendering
            f"--screenshot={raw}",
            url,
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if not raw.exists():
            raise SystemExit(
                f"chromium wrote no screenshot (exit {p.returncode}):\n{p.stderr[-2000:]}"
            )
        shrink(raw, out)
    return out


CLICK_TEXT = """
window.clickText = (text, nth = 0) => {
  const match = e => e.textContent.trim() === text;
  // the deepest elements showing exactly this text (a label, not its whole row)
  const hits = [...document.querySelectorAll('body *')]
    .filter(e => match(e) && ![...e.children].some(match));
  const hit = hits[nth < 0 ? hits.length + nth : nth];  // -1: the last (menus render last)
  if (!hit) throw new Error('no element with text ' + text);
  hit.click();
  return hits.length;
};
"""


def driven_screenshot(url: str, out: Path, size: str, steps: list[str], settle_s: float) -> Path:
    """Load ``url``, run each JavaScript step (waiting ``settle_s`` after each), shoot."""
    from cdp import Chromium

    width, height = (int(v) for v in size.split(","))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qexp-chromium-") as profile:
        chrome = Chromium(browser(), profile, width, height)
        try:
            chrome.goto(url, settle_s)
            for step in steps:
                chrome.js(CLICK_TEXT + step)
                time.sleep(settle_s)
            raw = chrome.screenshot(Path(profile) / "shot.png")
            shrink(raw, out)
        finally:
            chrome.close()
    return out


def shrink(src: Path, dst: Path) -> None:
    """Palette-quantise (text and flat UI colours survive it) to keep the PNG small."""
    from PIL import Image

    with Image.open(src) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            dst, optimize=True
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url", help="a file path or an http(s):// URL")
    p.add_argument("out", type=Path, help="PNG to write")
    p.add_argument("--size", default="1400,1800", help="window WIDTH,HEIGHT (default 1400,1800)")
    p.add_argument("--wait-ms", type=int, default=5000, help="JavaScript time budget (ms)")
    p.add_argument("--js", action="append", default=[], help="a script to run before the shot")
    a = p.parse_args(argv)
    if a.js:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        out = driven_screenshot(a.url, a.out, a.size, a.js, a.wait_ms / 1000)
    else:
        out = screenshot(a.url, a.out, a.size, a.wait_ms)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
