"""The HTML report page: one self-contained file (inline CSS, plots as base64 PNG)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from datetime import datetime, timezone

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 24px auto; max-width: 1320px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #666; font-size: 12px; }
.counts span { display: inline-block; margin-right: 10px; padding: 1px 8px; border-radius: 9px;
               background: #eee; font-size: 12px; }
table.qexp { border-collapse: separate; border-spacing: 0; margin: 8px 0; font-size: 13px; }
table.qexp caption { caption-side: bottom; text-align: left; color: #666; font-size: 12px;
                     padding-top: 4px; }
table.qexp th, table.qexp td { border: solid #ddd; border-width: 0 1px 1px 0; padding: 3px 6px;
                               background: #fff; }
table.qexp tr > :first-child { border-left-width: 1px; }
table.qexp thead th { border-top-width: 1px; }
/* headers and labels break after _ . / - (<wbr>); numbers never wrap */
table.qexp th { background: #f3f3f3; position: sticky; top: 0; z-index: 2; vertical-align: bottom; }
table.qexp td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
/* label columns: fixed widths (inline), pinned left while a wide table scrolls under them */
table.qexp .label { position: sticky; z-index: 1; box-sizing: border-box;
                    overflow-wrap: anywhere; }
table.qexp th.label { z-index: 3; }
table.qexp td.note { min-width: 14em; max-width: 32em; font-size: 12px; }
table.qexp td.noisy { background: #fff4d6; }
table.qexp td.best { font-weight: 700; background: #e3f4e1; }
table.qexp td.neg { color: #b00020; } table.qexp td.pos { color: #1b7f2a; }
table.qexp tr.status-SKIPPED td, table.qexp tr.status-FAILED td { color: #888; }
table.qexp tr.status-FAILED td:first-child { border-left: 3px solid #b00020; }
table.paper tr.pass td.verdict { color: #1b7f2a; font-weight: 700; }
table.paper tr.miss td.verdict { color: #b00020; font-weight: 700; }
table.paper tr.notrun td { color: #888; }
.scroll { overflow-x: auto; }
figure { margin: 12px 0 24px; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; }
"""


@dataclass
class Plot:
    title: str
    png: bytes
    caption: str = ""
    name: str = ""  # file name when the PNGs are also written next to the page


@dataclass
class Page:
    title: str
    meta: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    sections: list[tuple[str, str]] = field(default_factory=list)  # (heading, html fragment)
    plots: list[Plot] = field(default_factory=list)


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_page(page: Page) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = " · ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in page.meta.items())
    counts = "".join(f"<span>{html.escape(k)} {v}</span>" for k, v in page.counts.items() if v)
    body = [
        f"<h1>{html.escape(page.title)}</h1>",
        f'<p class="meta">{meta} · generated {now} by qexp report</p>',
        f'<p class="counts">{counts}</p>' if counts else "",
    ]
    for heading, fragment in page.sections:
        if heading:
            body.append(f"<h2>{html.escape(heading)}</h2>")
        body.append(f'<div class="scroll">{fragment}</div>')
    for p in page.plots:
        body.append(f"<h2>{html.escape(p.title)}</h2>")
        cap = f"<figcaption>{html.escape(p.caption)}</figcaption>" if p.caption else ""
        body.append(f"<figure>{img_tag(p.png, p.title)}{cap}</figure>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(page.title)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
