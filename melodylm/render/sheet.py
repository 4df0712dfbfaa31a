"""Sheet music: MusicXML (written by :mod:`melodylm.render.musicxml`) engraved to SVG by verovio.

verovio lays the music out on pages. A whole tune comes back as one SVG: the page is as tall as
the music needs (``adjustPageHeight``), and when verovio still makes several pages (its page
height has a ceiling) they are stacked top to bottom in one file.
"""

from __future__ import annotations

import re
from pathlib import Path

from melodylm.extras import require
from melodylm.render.common import KeyInfo, RenderError
from melodylm.render.musicxml import to_musicxml

PAGE_WIDTH = 2100  # verovio units (tenths of a mm at scale 100): an A4 width
MAX_PAGE_HEIGHT = 60000  # verovio's upper bound for pageHeight
VEROVIO_OPTIONS = {
    "pageWidth": PAGE_WIDTH,
    "pageHeight": MAX_PAGE_HEIGHT,
    "adjustPageHeight": True,
    "pageMarginTop": 60, "pageMarginBottom": 60, "pageMarginLeft": 60, "pageMarginRight": 60,
    "scale": 45,  # a readable staff at about 1000 px wide
    "breaks": "auto",
    "footer": "none",
    "svgViewBox": True,  # scales to its container in a web page
}


def engrave(musicxml: str) -> str:
    """SVG text of MusicXML engraved by verovio; all pages stacked in one SVG."""
    verovio = require("verovio", "render", "sheet music (svg)")
    verovio.enableLog(False)  # its warnings about MusicXML details would go to stderr as noise
    tk = verovio.toolkit()
    tk.setOptions(VEROVIO_OPTIONS)
    if not tk.loadData(musicxml):
        raise RenderError("verovio could not read the MusicXML written for this melody")
    pages = [tk.renderToSVG(i) for i in range(1, tk.getPageCount() + 1)]
    return pages[0] if len(pages) == 1 else stack_pages(pages)


def _size(svg: str) -> tuple[float, float]:
    vb = re.search(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) ([\d.]+)"', svg)
    if vb:
        return float(vb[1]), float(vb[2])
    w = re.search(r'width="([\d.]+)', svg)
    h = re.search(r'height="([\d.]+)', svg)
    return float(w[1]) if w else PAGE_WIDTH, float(h[1]) if h else MAX_PAGE_HEIGHT


def stack_pages(pages: list[str]) -> str:
    """One SVG holding verovio's pages one under another (nested <svg> elements keep their own ids)."""
    parts, y, width = [], 0.0, 0.0
    for svg in pages:
        w, h = _size(svg)
        body = re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", svg)
        body = re.sub(r"^<svg\b", f'<svg y="{y:g}" width="{w:g}" height="{h:g}"', body, count=1)
        parts.append(body)
        y += h
        width = max(width, w)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'viewBox="0 0 {width:g} {y:g}" width="{width:g}" height="{y:g}">\n' + "\n".join(parts) + "\n</svg>\n")


def render_sheet(score, svg_path: str | Path | None = None, musicxml_path: str | Path | None = None,
                 split_tick: int | None = None, key: KeyInfo | None = None, title: str | None = None,
                 pickup: int | str = 0) -> dict[str, Path]:
    """Write MusicXML and/or engraved SVG of a one-melody score; returns {"musicxml": path, "svg": path}.

    ``split_tick`` marks where the continuation begins; ``key``, ``title`` and ``pickup`` as in
    :func:`melodylm.render.musicxml.to_musicxml`.
    """
    xml = to_musicxml(score, split_tick=split_tick, key=key, title=title, pickup=pickup)
    out: dict[str, Path] = {}
    if musicxml_path is not None:
        out["musicxml"] = _write(musicxml_path, xml)
    if svg_path is not None:
        out["svg"] = _write(svg_path, engrave(xml))
    return out


def _write(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
