"""The progress chart (PNG, headless): mastery by topic and activity over time, for a user or a server.

Left: horizontal bars of mastery per topic (0-100 %), topics in roadmap order. Right: answers per
local day, stacked right / wrong. Titles, axis labels and units are Chinese when a font with
every glyph drawn is found (bot.charts' font search, probed with this chart's own text); without
one the labels fall back to English with a warning, like the other charts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Literal

from .charts import NO_CJK_WARNING, Chart, CjkFont, _figure, _fonts, _save, find_cjk_font
from .plan import topic_titles
from .roadmap import TOPIC_SLUGS

log = logging.getLogger(__name__)

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "title_user": "学习进度：各主题掌握度与每日答题",
        "title_server": "服务器学习进度：各主题平均掌握度与每日答题",
        "mastery_title": "各主题掌握度（%）",
        "mastery": "掌握度（%）",
        "topic": "主题",
        "activity_title": "每日答题数（题）",
        "date": "日期",
        "answers": "答题数（题）",
        "right": "答对",
        "wrong": "答错",
        "no_data": "暂无答题记录",
        "people": "人",
        "threshold": "掌握线",
    },
    "en": {
        "title_user": "Progress: mastery by topic and answers per day",
        "title_server": "Server progress: mean mastery by topic and answers per day",
        "mastery_title": "Mastery by topic (%)",
        "mastery": "Mastery (%)",
        "topic": "Topic",
        "activity_title": "Answers per day (count)",
        "date": "Date",
        "answers": "Answers (count)",
        "right": "right",
        "wrong": "wrong",
        "no_data": "no answers yet",
        "people": "learners",
        "threshold": "mastery line",
    },
}


def needed_glyphs() -> str:
    """Every non-ASCII character this chart may draw (labels and topic names)."""
    text = "".join(LABELS["zh"].values()) + "".join(topic_titles().values()) + "（）："
    return "".join(sorted({c for c in text if ord(c) > 127 and not c.isspace()}))


def _choose(font: CjkFont | Literal["auto"] | None) -> tuple[CjkFont | None, str, list[str]]:
    chosen = find_cjk_font(needed_glyphs()) if font == "auto" else font
    if chosen is None:
        log.warning(NO_CJK_WARNING)
        return None, "en", [NO_CJK_WARNING]
    return chosen, "zh", []


def progress_chart(mastery: Mapping[str, float], days: Sequence[date], right: Sequence[int],
                   wrong: Sequence[int], path: str | Path, *, server: bool = False,
                   learners: Mapping[str, int] | None = None, tz: str = "Asia/Shanghai",
                   threshold: float | None = 0.6,
                   font: CjkFont | Literal["auto"] | None = "auto") -> Chart:
    """`mastery`: topic → 0..1 (missing topics draw as 0); `right`/`wrong`: answers per day of `days`;
    `learners`: topic → how many members have answers (server view, drawn next to the bars)."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    path = Path(path)
    chosen, lang, warns = _choose(font)
    L = LABELS[lang]
    names = topic_titles() if lang == "zh" else {t: t for t in TOPIC_SLUGS}
    topics = list(TOPIC_SLUGS)
    values = [100.0 * max(0.0, min(1.0, float(mastery.get(t, 0.0)))) for t in topics]
    title = L["title_server" if server else "title_user"]
    xlabel_days = f"{L['date']}（{tz}）" if lang == "zh" else f"{L['date']} ({tz})"
    with _fonts(chosen):
        fig = _figure((13, 6.4))
        fig.suptitle(title, fontsize=14)
        fig.subplots_adjust(left=0.19, right=0.98, top=0.88, bottom=0.14, wspace=0.28)
        ax_m, ax_a = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1.0]})

        y = list(range(len(topics)))
        colors = ["#4c9f70" if threshold is not None and v >= threshold * 100 else "#5b8bd9" for v in values]
        ax_m.barh(y, values, color=colors, height=0.7)
        ax_m.set_yticks(y, [names[t] for t in topics], fontsize=9)
        ax_m.invert_yaxis()  # roadmap order, top to bottom
        ax_m.set_xlim(0, 100)
        ax_m.xaxis.set_major_formatter(PercentFormatter(100))
        ax_m.set_title(L["mastery_title"], fontsize=12)
        ax_m.set_xlabel(L["mastery"])
        ax_m.set_ylabel(L["topic"])
        if threshold is not None:
            ax_m.axvline(threshold * 100, color="#999999", linestyle="--", linewidth=1, label=L["threshold"])
            ax_m.legend(loc="lower right", fontsize=8)
        for yi, (t, v) in enumerate(zip(topics, values, strict=True)):
            label = f"{v:.0f}%"
            if learners is not None:
                label += f" · {learners.get(t, 0)}{L['people'] if lang == 'zh' else ' ' + L['people']}"
            ax_m.text(min(v + 1.5, 80.0), yi, label, va="center", fontsize=8)
        ax_m.grid(axis="x", alpha=0.3)

        x = list(range(len(days)))
        ax_a.bar(x, list(right), color="#4c9f70", label=L["right"], width=0.8)
        ax_a.bar(x, list(wrong), bottom=list(right), color="#d9705b", label=L["wrong"], width=0.8)
        step = max(1, len(days) // 10)
        ax_a.set_xticks(x[::step], [d.strftime("%m-%d") for d in days[::step]], rotation=45 if len(days) > 10 else 0)
        ax_a.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_a.set_title(L["activity_title"], fontsize=12)
        ax_a.set_xlabel(xlabel_days)
        ax_a.set_ylabel(L["answers"])
        total = [a + b for a, b in zip(right, wrong, strict=True)]
        if any(total):
            ax_a.set_ylim(0, max(total) * 1.15 + 0.5)
            ax_a.legend(loc="upper left", fontsize=9)
        else:
            ax_a.set_ylim(0, 1)
            ax_a.text(0.5, 0.5, L["no_data"], ha="center", va="center", transform=ax_a.transAxes)
        ax_a.grid(axis="y", alpha=0.3)
        _save(fig, path)
    return Chart(path, fig, lang, chosen, title, L["mastery"], L["topic"], warns)
