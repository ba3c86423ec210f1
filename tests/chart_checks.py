"""Checks shared by the chart tests: every non-ASCII label has its glyphs in the font it resolves to."""

from __future__ import annotations

import functools
import io
import warnings
from typing import Any

from fontTools.ttLib import TTFont
from matplotlib import font_manager as fm
from matplotlib.text import Text


@functools.lru_cache(maxsize=8)
def cmap(path: str, index: int) -> frozenset[int]:
    """The code points of a font face (parsing a CJK collection is slow: once per face)."""
    font = TTFont(path, fontNumber=index, lazy=True)
    try:
        return frozenset(font.getBestCmap())
    finally:
        font.close()


def texts(chart: Any) -> list[Text]:
    return [t for t in chart.figure.findobj(Text) if t.get_text().strip()]


def has_cjk(s: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in s)


def assert_glyphs_present(chart: Any) -> None:
    """Every text with non-ASCII characters resolves to a font file whose cmap has them all."""
    for t in texts(chart):
        wide = {ord(c) for c in t.get_text() if ord(c) > 127 and not c.isspace()}
        if not wide:
            continue
        resolved = fm.findfont(t.get_fontproperties(), fallback_to_default=False)
        missing = wide - cmap(str(resolved), int(getattr(resolved, "face_index", 0) or 0))
        assert not missing, (t.get_text(), resolved, [chr(c) for c in missing])


def render_without_glyph_warnings(chart: Any) -> None:
    """matplotlib warns 'Glyph … missing from font(s)' when it draws a tofu box: there must be none."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chart.figure.savefig(io.BytesIO(), format="png")
