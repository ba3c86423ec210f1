"""Offline intent routing: obvious requests go to the same tools a model would call.

热搜 → weibo_hot · 今天新闻/人民日报 → news_today · 出一道题 (+topic) → quiz_question ·
arithmetic such as "2的10次方加3是多少" or "3*(4+5)" → calculator · a URL → summarize_url ·
现在几点/今天几号 → now. Anything else is left to retrieval (None).
Pure functions over text: no I/O, easy to test.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .calculator import FUNCTIONS, ToolError, evaluate
from .quizbank import resolve_topic


@dataclass(frozen=True, slots=True)
class Intent:
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)


_URL = re.compile(r"https?://[^\s<>\"'，。！？、）)】]+", re.I)
_HOT = re.compile(r"热搜|微博热|热门话题|hot\s*search|trending", re.I)
_NEWS = re.compile(r"人民日报|(今天|今日|最新|每日|当天)[^，,。？?]{0,5}?(新闻|要闻|头条)|^\s*(新闻|要闻|头条)\s*[?？!！。]*\s*$|"
                   r"(today'?s?|latest)\s+(news|headlines)|news\s+today", re.I)
# "来一道RAG的题", "出个题", "来道题", "再来一题", "考考我"; not "来个问题" or "来说一下主题"
_QUIZ = re.compile(r"(出|来|再来|再出|给我出|给我来|做)\s*[一1]?\s*[道个]\s*.{0,10}?(?<![问主标话课专])题|"
                   r"(出|来|再来)[一1]题|出题|考考我|测验一下|quiz", re.I)
_REVEAL = re.compile(r"(带|给|附|连同|和)(上)?(答案|解析)|with (the )?answer", re.I)
_NOW = re.compile(r"(现在|当前)(是)?(几点|什么时间|时间)|几点了|今天(是)?(几号|几月几[日号]|星期几|周几|礼拜几)|"
                  r"今天日期|what time is it|what'?s the (time|date)", re.I)
_DIFFICULTY = {"简单": "easy", "容易": "easy", "easy": "easy", "中等": "medium", "medium": "medium",
               "难": "hard", "困难": "hard", "hard": "hard"}

# Chinese arithmetic phrasing → Python operators (longest phrases first)
_CN_OPS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"的平方根"), "**0.5"),
    (re.compile(r"的立方根"), "**(1/3)"),
    (re.compile(r"的\s*(\d+(?:\.\d+)?)\s*次(方|幂)"), r"**\1"),
    (re.compile(r"的\s*负\s*(\d+(?:\.\d+)?)\s*次(方|幂)"), r"**-\1"),
    (re.compile(r"的平方"), "**2"),
    (re.compile(r"的立方"), "**3"),
    (re.compile(r"(\d+(?:\.\d+)?)\s*的阶乘"), r"factorial(\1)"),
    (re.compile(r"根号\s*(\d+(?:\.\d+)?)"), r"sqrt(\1)"),
    (re.compile(r"乘以|乘上|乘"), "*"),
    (re.compile(r"除以"), "/"),
    (re.compile(r"整除"), "//"),
    (re.compile(r"取余|模|余"), "%"),
    (re.compile(r"加上|加"), "+"),
    (re.compile(r"减去|减"), "-"),
    (re.compile(r"[x×X](?=\s*[\d(（])"), "*"),
]
_FILLER = re.compile(r"(请问|请|帮我|帮忙|麻烦|计算一下|计算|算一下|算算|算|求|一下|等于多少|等于几|等于|是多少|是几|"
                     r"多少|结果|what is|what's|calculate|compute|equals?|的值)", re.I)
_TRAIL = re.compile(r"[\s=＝?？!！。.,，:：呢吗啊呀]+$")
_ALLOWED = re.compile(r"^[\d\s.+\-*/%()a-z_,]+$")
_HAS_OP = re.compile(r"\d\s*[)]*\s*(\*\*|//|[+\-*/%])\s*[(]*\s*[\d.a-z(]|^[a-z_]+\(|\)\s*(\*\*|[+\-*/%])")


def to_expression(text: str) -> str | None:
    """An arithmetic expression from a question, or None when the text is not arithmetic."""
    t = unicodedata.normalize("NFKC", text or "").strip()
    if not t or len(t) > 200 or not re.search(r"\d", t):
        return None
    t = t.replace("×", "*").replace("÷", "/").replace("^", "**").replace("−", "-")
    for pat, rep in _CN_OPS:
        t = pat.sub(rep, t)
    t = _FILLER.sub("", t)
    t = _TRAIL.sub("", t).strip().lower()
    if not t or not _ALLOWED.match(t) or not _HAS_OP.search(t):
        return None
    names = set(re.findall(r"[a-z_]+", t))
    if not names <= set(FUNCTIONS) | {"pi", "e"}:
        return None
    try:
        evaluate(t)
    except ToolError as e:
        # the shape is arithmetic but the value is refused (huge exponent, division by zero ...):
        # still the calculator's job, it says why
        if "parse" in str(e) or "syntax" in str(e) or "名称" in str(e):
            return None
    return t


def route(text: str) -> Intent | None:
    """The tool an offline request obviously asks for, with its arguments."""
    t = (text or "").strip()
    if not t:
        return None
    m = _URL.search(t)
    if m:
        return Intent("summarize_url", {"url": m.group(0)})
    if _HOT.search(t):
        return Intent("weibo_hot", {})
    if _NEWS.search(t):
        return Intent("news_today", {})
    if _QUIZ.search(t):
        args: dict[str, Any] = {}
        topic = resolve_topic(t)
        if topic:
            args["topic"] = topic
        for word, level in _DIFFICULTY.items():
            if word in t.lower():
                args["difficulty"] = level
                break
        if _REVEAL.search(t):
            args["reveal_answer"] = True
        return Intent("quiz_question", args)
    if _NOW.search(t):
        return Intent("now", {})
    expr = to_expression(t)
    if expr:
        return Intent("calculator", {"expression": expr})
    return None


_QID = re.compile(r"题号[:：\s]*([a-z_]+-\d+)")
_ANSWER = re.compile(r"^\s*(?:我选|选|答案是|答案|answer\s*(?:is)?)?\s*([A-Da-d])\s*[.。!！]?\s*$|^\s*(答案|answer|解析)\s*[?？]?\s*$",
                     re.I)


def quiz_followup(text: str, previous_reply: str) -> tuple[str, str | None] | None:
    """(question id, chosen letter or None for "show the answer") when the user answers the
    question of the previous offline reply."""
    qid = _QID.search(previous_reply or "")
    m = _ANSWER.match(text or "")
    if not qid or not m:
        return None
    return qid.group(1), (m.group(1).upper() if m.group(1) else None)
