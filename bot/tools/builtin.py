"""The built-in tools: search_notes, news_today, weibo_hot, summarize_url, quiz_question,
calculator, now. `build_registry` takes every dependency explicitly (tests inject them);
`registry_for(app)` builds one registry per App from its settings and caches it.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import feeds, quizbank
from .calculator import calculate
from .registry import Registry, Tool, ToolError
from .web import FetchPolicy, summarize_url

if TYPE_CHECKING:
    from ..app import App
    from ..config import Settings
    from ..knowledge import KnowledgeBase

WEEKDAYS_ZH = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
HOT_TTL_S = 600.0  # the hot-search list is live: refresh it at most every ten minutes within a day


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt argument is an error the model can fix


class SearchNotesParams(_Params):
    query: str = Field(..., min_length=1, max_length=500, description="要查的问题或关键词 / what to look up")
    k: int = Field(4, ge=1, le=8, description="返回几段 / how many passages")


class NewsTodayParams(_Params):
    limit: int = Field(8, ge=1, le=30, description="最多几条 / at most this many articles")


class WeiboHotParams(_Params):
    limit: int = Field(10, ge=1, le=50, description="最多几条 / at most this many topics")


class SummarizeUrlParams(_Params):
    url: str = Field(..., min_length=8, max_length=2000, description="http(s) 网页链接 / an http(s) URL")
    max_chars: int = Field(300, ge=60, le=1200, description="摘要最长字数 / summary length in characters")


class QuizQuestionParams(_Params):
    topic: str | None = Field(None, max_length=60, description="主题 slug 或关键词，如 rag、量化 / topic slug or word")
    difficulty: Literal["easy", "medium", "hard"] | None = None
    id: str | None = Field(None, max_length=40, description="指定题号 / a question id")
    reveal_answer: bool = Field(False, description="是否给出答案与解析 / include the answer and explanation")


class CalculatorParams(_Params):
    expression: str = Field(..., min_length=1, max_length=300,
                            description="算术表达式，如 2**10+3、(4+5)*3、sqrt(2) / an arithmetic expression")


class NowParams(_Params):
    pass


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_registry(
    settings: Settings,
    *,
    kb: Callable[[], KnowledgeBase] | None = None,
    fetch_hot: feeds.FetchHot | None = None,
    fetch_news: feeds.FetchNews | None = None,
    fetch_policy: FetchPolicy | None = None,
    clock: Callable[[], datetime] = utc_now,
    rng: random.Random | None = None,
) -> Registry:
    tz = settings.zone
    today = feeds.local_today(clock, tz)
    cache = feeds.DailyCache(today)
    hot = fetch_hot or feeds.pipeline_fetch_hot(settings)
    news = fetch_news or feeds.pipeline_fetch_news(settings)
    policy = fetch_policy or FetchPolicy(allowlist=settings.allowlisted_hosts)
    rand = rng or random.Random()

    async def search_notes(p: SearchNotesParams) -> dict[str, Any]:
        if kb is None:
            raise ToolError("知识库不可用 / the knowledge base is not available")
        from ..knowledge import search_all
        from ..knowledge.answer import is_relevant

        # the server's own files too, when the request carries them
        hits = [h for h in await search_all(kb(), p.query, max(p.k, 5)) if is_relevant(h)][:p.k]
        return {"query": p.query, "passages": [
            {"title": h.chunk.title, "path": h.chunk.path, "heading": h.chunk.section,
             "lines": [h.chunk.start_line, h.chunk.end_line], "text": h.chunk.text[:700]} for h in hits],
            **({} if hits else {"note": "笔记中没有找到相关内容 / nothing relevant in the notes"})}

    async def news_today(p: NewsTodayParams) -> dict[str, Any]:
        day: date = today()
        rows = await cache.get("news_today", lambda: news(day), day=day)
        return {"date": day.isoformat(), "source": "人民日报 People's Daily", "articles": rows[:p.limit]}

    async def weibo_hot(p: WeiboHotParams) -> dict[str, Any]:
        rows = await cache.get("weibo_hot", hot, ttl_s=HOT_TTL_S)
        return {"date": today().isoformat(), "source": "微博热搜 Weibo hot search", "topics": rows[:p.limit]}

    async def summarize(p: SummarizeUrlParams) -> dict[str, Any]:
        return await summarize_url(p.url, policy, p.max_chars)

    async def quiz_question(p: QuizQuestionParams) -> dict[str, Any]:
        topic = quizbank.resolve_topic(p.topic) if p.topic else None
        if p.topic and topic is None:
            raise ToolError(f"没有这个主题 / unknown topic {p.topic!r}; topics: {', '.join(quizbank.TOPICS)}")
        q = quizbank.pick(rand, topic=topic, difficulty=p.difficulty, qid=p.id)
        if q is None:
            raise ToolError("题库里没有符合条件的题 / no question matches")
        out: dict[str, Any] = {"id": q["id"], "topic": q["topic"], "question": q["question"],
                               "options": list(q["options"]), "difficulty": q.get("difficulty")}
        if p.reveal_answer:
            out.update(answer=q["answer"], answer_letter="ABCD"[q["answer"]], explanation=q.get("explanation", ""),
                       ref=q.get("ref"))
        return out

    async def calculator(p: CalculatorParams) -> dict[str, Any]:
        return calculate(p.expression)

    async def now(p: NowParams) -> dict[str, Any]:
        t = clock().astimezone(tz)
        return {"datetime": t.isoformat(timespec="seconds"), "date": t.date().isoformat(),
                "time": t.strftime("%H:%M"), "weekday": WEEKDAYS_ZH[t.weekday()], "tz": settings.tz}

    return Registry([
        Tool("search_notes", "在内置学习笔记和已索引的资料中检索，返回带出处（路径、小节）的段落",
             "search the study notes and indexed documents; passages with path and heading",
             SearchNotesParams, search_notes, timeout_s=20.0),
        Tool("news_today", "今天人民日报的要闻标题与摘要", "today's People's Daily headlines with short summaries",
             NewsTodayParams, news_today, timeout_s=30.0, max_result_chars=5000),
        Tool("weibo_hot", "当前微博热搜榜（排名、话题、热度）", "the current Weibo hot-search list (rank, topic, heat)",
             WeiboHotParams, weibo_hot, timeout_s=20.0, max_result_chars=3000),
        Tool("summarize_url", "打开一个公开网页，提取正文并给出摘要（内网地址会被拒绝）",
             "fetch a public web page, extract its main text and summarise it (private addresses refused)",
             SummarizeUrlParams, summarize, timeout_s=25.0, max_result_chars=3000),
        Tool("quiz_question", "从题库随机抽一道选择题（默认不给答案）",
             "draw a multiple-choice question from the quiz bank (answer hidden unless asked)",
             QuizQuestionParams, quiz_question, timeout_s=5.0),
        Tool("calculator", "精确计算算术表达式（+ - * / // % **、括号、sqrt/log 等）",
             "evaluate an arithmetic expression exactly (+ - * / // % **, parentheses, sqrt, log ...)",
             CalculatorParams, calculator, timeout_s=5.0),
        Tool("now", "当前日期、时间和星期（按 STUDYBOT_TZ 时区）",
             "the current date, time and weekday in the configured time zone", NowParams, now, timeout_s=2.0),
    ])


_REGISTRIES: weakref.WeakKeyDictionary[Any, Registry] = weakref.WeakKeyDictionary()


def registry_for(app: App) -> Registry:
    """One registry per App (so the daily caches are shared by chat, ask and the offline engine)."""
    reg = _REGISTRIES.get(app)
    if reg is None:
        reg = build_registry(app.settings, kb=lambda: app.kb)
        _REGISTRIES[app] = reg
    return reg


def set_registry(app: App, registry: Registry) -> None:
    """Use this registry for the App (tests, embedders with their own fetchers)."""
    _REGISTRIES[app] = registry
