"""Plain-text answers built from tool results, for the offline engine (no model to phrase them).
The data was scrubbed by the registry; nothing here adds facts of its own."""

from __future__ import annotations

from typing import Any

from .registry import ToolResult


def _heat(v: Any) -> str:
    if isinstance(v, (int, float)) and v >= 10_000:
        return f"{v / 10_000:.1f}万"
    return "" if v is None else str(v)


def weibo_hot(d: dict[str, Any]) -> str:
    topics = d.get("topics") or []
    if not topics:
        return "现在没有取到微博热搜。/ The hot-search list is empty right now."
    lines = [f"微博热搜（{d.get('date', '')}）/ Weibo hot search:"]
    for i, t in enumerate(topics, 1):
        parts = [f"热度 {_heat(t.get('heat'))}"] if _heat(t.get("heat")) else []
        parts += [str(t[k]) for k in ("label", "flag") if t.get(k)]
        extra = "，".join(parts)
        lines.append(f"{t.get('rank') or i}. {t.get('word', '')}" + (f"（{extra}）" if extra else ""))
    return "\n".join(lines)


def news_today(d: dict[str, Any]) -> str:
    arts = d.get("articles") or []
    if not arts:
        return f"{d.get('date', '')} 没有取到人民日报的文章。/ No People's Daily articles found for today."
    lines = [f"人民日报 {d.get('date', '')} 要闻 / today's People's Daily:"]
    for i, a in enumerate(arts, 1):
        page = f"［{a['page']}］" if a.get("page") else ""
        lines.append(f"{i}. {page}{a.get('title', '')}")
        if a.get("summary"):
            lines.append(f"   {a['summary']}")
    return "\n".join(lines)


def quiz_question(d: dict[str, Any]) -> str:
    lines = [f"测验（{d.get('topic')} · {d.get('difficulty') or '-'} · 题号 {d.get('id')}）", d.get("question", "")]
    lines += [f"  {'ABCD'[i]}. {opt}" for i, opt in enumerate(d.get("options") or [])]
    if "answer_letter" in d:
        lines.append(f"答案 / answer: {d['answer_letter']}")
        if d.get("explanation"):
            lines.append(f"解析：{d['explanation']}")
    else:
        lines.append("回复 A/B/C/D 作答，或回复「答案」查看解析。/ Reply A-D to answer, or 答案 to see it.")
    return "\n".join(lines)


def quiz_graded(d: dict[str, Any], chosen: str | None) -> str:
    right = d.get("answer_letter", "?")
    head = (f"答对了！正确答案是 {right}。/ Correct!" if chosen == right else
            f"不对，你选了 {chosen}，正确答案是 {right}。/ Not quite: the answer is {right}." if chosen else
            f"正确答案是 {right}。/ The answer is {right}.")
    ref = d.get("ref") or {}
    where = f"\n参考 / see: {ref.get('path')} › {ref.get('heading')}" if ref.get("path") else ""
    return f"{head}\n解析：{d.get('explanation', '')}{where}"


def calculator(d: dict[str, Any]) -> str:
    return f"{d.get('expression')} = {d.get('result')}"


def now(d: dict[str, Any]) -> str:
    return f"现在是 {d.get('date')} {d.get('weekday')} {d.get('time')}（{d.get('tz')}）/ now: {d.get('datetime')}"


def summarize_url(d: dict[str, Any]) -> str:
    title = f"《{d['title']}》" if d.get("title") else ""
    cut = "（网页过大，只读取了前一部分 / page cut at the size limit）" if d.get("truncated") else ""
    return f"网页摘要 / page summary {title}{cut}：\n{d.get('summary', '')}\n来源 / source: {d.get('url')}"


def search_notes(d: dict[str, Any]) -> str:
    ps = d.get("passages") or []
    if not ps:
        return "笔记中没有找到相关内容。/ Nothing relevant in the notes."
    return "\n".join(f"[{i}] {p['title']} › {p['heading']}（{p['path']}）" for i, p in enumerate(ps, 1))


_FORMATS = {"weibo_hot": weibo_hot, "news_today": news_today, "quiz_question": quiz_question,
            "calculator": calculator, "now": now, "summarize_url": summarize_url, "search_notes": search_notes}


def as_text(result: ToolResult) -> str:
    """A user-facing answer for one tool result; errors are said plainly."""
    if not result.ok:
        return f"抱歉，{result.name} 没能完成：{result.error}"
    fmt = _FORMATS.get(result.name)
    return fmt(result.data) if fmt and isinstance(result.data, dict) else str(result.data)
