"""The progress chart renders headless (Agg, no pyplot): a PNG with Chinese title, axis labels and
units, drawn in a font whose file has every glyph (checked with fontTools, independently of
matplotlib); mastery bars match the computed mastery, activity bars the answers per day; an
English fallback with a warning when no CJK font exists."""

from __future__ import annotations

import io
import json
import struct
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.charts import NO_CJK_WARNING, Chart
from bot.progress import ProgressStore, user_progress
from bot.progress_chart import LABELS, needed_glyphs, progress_chart
from bot.roadmap import TOPIC_SLUGS
from bot.roadmap_cli import progress_command, progress_report
from tests.chart_checks import assert_glyphs_present, cmap, has_cjk, render_without_glyph_warnings, texts

from .test_progress import Clock, U, answer_session, app, clock, quiz_service  # noqa: F401 - fixtures


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])




def bar_widths(chart: Chart) -> list[float]:
    ax = chart.figure.get_axes()[0]
    return [p.get_width() for p in ax.patches]


DAYS = [date(2025, 3, 1) + timedelta(days=i) for i in range(7)]


def test_chart_headless_with_chinese_title_axis_labels_and_units(tmp_path: Path) -> None:
    mastery = {"quickstart": 0.8, "rlhf": 0.35, "nlp": 1.2}  # out of range is clamped
    chart = progress_chart(mastery, DAYS, [1, 0, 3, 0, 0, 5, 2], [0, 0, 1, 0, 2, 1, 0], tmp_path / "p" / "me.png")
    if chart.lang != "zh":
        pytest.fail("no CJK font found: install noto-cjk-sans-otc (pip) or fonts-noto-cjk (apt)")
    w, h = png_size(chart.path)
    assert chart.path.stat().st_size > 10000 and w >= 1000 and h >= 500
    assert chart.warnings == [] and chart.font is not None
    assert {ord(c) for c in needed_glyphs()} <= cmap(chart.font.path, chart.font.face_index)
    fig = chart.figure
    assert fig.get_suptitle() == LABELS["zh"]["title_user"] and has_cjk(fig.get_suptitle())
    ax_m, ax_a = fig.get_axes()
    assert ax_m.get_title() == "各主题掌握度（%）" and ax_m.get_xlabel() == "掌握度（%）" and ax_m.get_ylabel() == "主题"
    assert ax_a.get_title() == "每日答题数（题）" and ax_a.get_ylabel() == "答题数（题）"
    assert ax_a.get_xlabel() == "日期（Asia/Shanghai）"
    ticks = [t.get_text() for t in ax_m.get_yticklabels()]
    assert len(ticks) == len(TOPIC_SLUGS) and ticks[0] == "快速入门" and "偏好对齐（RLHF / DPO）" in ticks
    assert ax_m.get_xlim() == (0.0, 100.0)
    widths = bar_widths(chart)
    assert widths[TOPIC_SLUGS.index("quickstart")] == pytest.approx(80)
    assert widths[TOPIC_SLUGS.index("rlhf")] == pytest.approx(35)
    assert widths[TOPIC_SLUGS.index("nlp")] == pytest.approx(100) and widths[TOPIC_SLUGS.index("rag")] == 0
    legend = [t.get_text() for t in ax_a.get_legend().get_texts()]
    assert legend == ["答对", "答错"]
    heights = [p.get_height() for p in ax_a.patches]
    assert sum(heights) == 15  # every answer of the week is drawn
    assert [t.get_text() for t in ax_a.get_xticklabels()][:2] == ["03-01", "03-02"]
    assert_glyphs_present(chart)
    render_without_glyph_warnings(chart)


def test_an_empty_history_says_so(tmp_path: Path) -> None:
    chart = progress_chart({}, DAYS, [0] * 7, [0] * 7, tmp_path / "empty.png")
    assert chart.path.stat().st_size > 0 and all(w == 0 for w in bar_widths(chart))
    assert "暂无答题记录" in {t.get_text() for t in texts(chart)}


def test_without_a_cjk_font_labels_fall_back_to_english(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    chart = progress_chart({"rlhf": 0.5}, DAYS, [1] * 7, [0] * 7, tmp_path / "en.png", font=None)
    assert chart.lang == "en" and chart.warnings == [NO_CJK_WARNING] and chart.path.stat().st_size > 10000
    assert all(t.get_text().isascii() for t in texts(chart))
    render_without_glyph_warnings(chart)
    assert NO_CJK_WARNING in caplog.text


async def test_progress_of_a_user_and_a_server_from_quiz_history(app: App, clock: Clock,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    svc = await quiz_service(app, clock)
    await answer_session(svc, clock, U, "rlhf", 4, right=True, guild="g1")
    clock.advance(days=1)
    await answer_session(svc, clock, U, "nlp", 2, right=False, guild="g1")
    await answer_session(svc, clock, "discord:2", "rlhf", 2, right=False, guild="g1")
    ps = await ProgressStore.for_app(app)
    up = await user_progress(ps, U, clock.now)

    rep = await progress_report(app, tmp_path / "me.png", user=U, days=7, now=clock.now)
    assert rep.chart is not None and rep.chart.path.is_file() and rep.warnings == []
    widths = bar_widths(rep.chart)
    assert widths[TOPIC_SLUGS.index("rlhf")] == pytest.approx(100 * up.topics["rlhf"].mastery)
    assert widths[TOPIC_SLUGS.index("nlp")] == pytest.approx(100 * up.topics["nlp"].mastery)
    act = rep.data["activity"]
    assert len(act) == 7 and act[-1]["date"] == "2025-03-04"
    assert (act[-2]["right"], act[-2]["wrong"], act[-1]["right"], act[-1]["wrong"]) == (4, 0, 0, 2)
    assert "掌握度" in rep.text and "图表已保存" in rep.text
    assert_glyphs_present(rep.chart)

    server = await progress_report(app, tmp_path / "g1.png", guild="g1", days=7, now=clock.now)
    assert server.chart is not None and server.chart.figure.get_suptitle() == LABELS["zh"]["title_server"]
    shown = {t.get_text() for t in texts(server.chart)}
    assert any(s.endswith("· 2人") for s in shown)  # two learners answered rlhf
    assert sum(d["wrong"] for d in server.data["activity"]) == 4 and server.data["members"] == 2
    assert "成员 2 人" in server.text

    out = io.StringIO()
    png = tmp_path / "cli.png"
    assert await progress_command(app, U, png, out, json_out=True, days=7, now=clock.now) == 0
    doc: dict[str, Any] = json.loads(out.getvalue())
    assert doc["png"] == str(png) and png.stat().st_size > 10000 and doc["topics"]["rlhf"]["answered"] == 4
    err = io.StringIO()
    assert await progress_command(app, U, None, io.StringIO(), days=0, err=err, now=clock.now) == 2
    assert "天数" in err.getvalue()
