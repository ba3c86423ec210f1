"""Charts (bot/charts.py) rendered headless: PNG files that exist and are not empty, with
Chinese titles, axis labels and units, drawn in a font that has every glyph (checked on the
font file itself with fontTools, independently of matplotlib), and an English fallback with
a warning when no such font exists."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import pytest

from bot.charts import (
    LABELS,
    NO_CJK_WARNING,
    errors_chart,
    errors_per_day,
    find_cjk_font,
    latency_chart,
    local_days,
    needed_glyphs,
)
from tests.chart_checks import assert_glyphs_present, cmap, has_cjk, render_without_glyph_warnings, texts

NOW = 1_764_000_000.0  # 2025-11-25 00:00 in Asia/Shanghai


def rows(n: int = 120, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ok = rng.random() < 0.8
        out.append({"provider": rng.choice(["qwen", "ernie", "spark"]), "model": "m",
                    "outcome": "ok" if ok else rng.choice(["error", "error", "interrupted"]),
                    "ttft_ms": rng.uniform(80, 900) if ok else None, "duration_ms": rng.uniform(300, 4000),
                    "started_at": NOW - rng.uniform(0, 6.9 * 86400),
                    "error_kind": None if ok else rng.choice(["rate_limited", "timeout", "auth", "unavailable"])})
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])




@pytest.fixture(scope="module")
def cjk() -> Any:
    font = find_cjk_font()
    assert font is not None, ("no CJK font found: install the noto-cjk-sans-otc package (pip) or Debian's "
                              "fonts-noto-cjk")
    return font


def test_the_cjk_font_found_has_every_glyph_the_charts_use(cjk: Any) -> None:
    assert set(needed_glyphs()) >= set("延迟错误次数毫秒日期服务商")
    assert {ord(c) for c in needed_glyphs()} <= cmap(cjk.path, cjk.face_index)


def test_a_probe_no_font_has_finds_nothing() -> None:
    assert find_cjk_font("\U000f0000") is None  # a private-use plane code point


def test_latency_chart_headless_with_chinese_title_labels_and_units(cjk: Any, tmp_path: Path) -> None:
    chart = latency_chart(rows(), tmp_path / "out" / "latency.png")
    w, h = png_size(chart.path)
    assert chart.path.stat().st_size > 5000 and w >= 800 and h >= 400
    assert chart.lang == "zh" and chart.font == cjk and chart.warnings == []
    fig = chart.figure
    assert fig.get_suptitle() == chart.title and has_cjk(chart.title)
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax in axes:
        assert has_cjk(ax.get_title()) and "毫秒" in ax.get_title()
        assert ax.get_xlabel() == "服务商"
        assert ax.get_ylabel() == "延迟（毫秒）"  # the unit, in Chinese
        assert [t.get_text() for t in ax.get_xticklabels()] == ["ernie", "qwen", "spark"]
    assert "首字" in axes[0].get_title() and "总延迟" in axes[1].get_title()
    assert_glyphs_present(chart)
    render_without_glyph_warnings(chart)


def test_errors_chart_stacks_kinds_per_day(cjk: Any, tmp_path: Path) -> None:
    data = rows()
    chart = errors_chart(data, tmp_path / "errors.png", since=NOW - 7 * 86400, until=NOW, tz="Asia/Shanghai")
    assert chart.path.stat().st_size > 5000 and chart.lang == "zh"
    ax = chart.figure.get_axes()[0]
    assert ax.get_title() == LABELS["zh"]["errors_title"] and has_cjk(ax.get_title())
    assert ax.get_xlabel().startswith("日期") and ax.get_ylabel() == "错误次数（次）"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(legend) <= {"限流或额度", "超时", "鉴权失败", "服务不可用", "回答中断"} and legend
    # bar heights per day add up to the errors of that day
    days = local_days(NOW - 7 * 86400, NOW, "Asia/Shanghai")
    per_day = errors_per_day(data, days, "Asia/Shanghai")
    heights = [0.0] * len(days)
    for patch in ax.patches:
        heights[round(patch.get_x() + patch.get_width() / 2)] += patch.get_height()
    assert heights == [sum(v[i] for v in per_day.values()) for i in range(len(days))]
    assert sum(heights) == sum(1 for r in data if r["outcome"] in ("error", "interrupted"))
    assert_glyphs_present(chart)
    render_without_glyph_warnings(chart)


def test_charts_of_an_empty_window_say_so(cjk: Any, tmp_path: Path) -> None:
    lat = latency_chart([], tmp_path / "l.png")
    err = errors_chart([], tmp_path / "e.png", since=NOW - 86400, until=NOW)
    assert lat.path.stat().st_size > 0 and err.path.stat().st_size > 0
    shown = {t.get_text() for c in (lat, err) for t in texts(c)}
    assert "无数据" in shown and "这段时间没有错误" in shown


def test_without_a_cjk_font_labels_fall_back_to_english_with_a_warning(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    lat = latency_chart(rows(), tmp_path / "l.png", font=None)
    err = errors_chart(rows(), tmp_path / "e.png", since=NOW - 7 * 86400, until=NOW, font=None)
    for c in (lat, err):
        assert c.lang == "en" and c.warnings == [NO_CJK_WARNING] and c.path.stat().st_size > 5000
        assert all(t.get_text().isascii() for t in texts(c))
        render_without_glyph_warnings(c)
    assert lat.figure.get_axes()[0].get_ylabel() == "Latency (ms)"
    assert err.figure.get_axes()[0].get_ylabel() == "Errors (count)"
    assert NO_CJK_WARNING in caplog.text
