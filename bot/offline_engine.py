"""The offline engine's brain: answers from the study notes by retrieval, with citations,
and says plainly that it is offline. It never invents facts.

Obvious requests (热搜, 今天新闻, 出一道题, arithmetic, a URL, the time) go to the same tools a
model would call (bot.tools.intents); the tools that ran are recorded for the caller.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .knowledge import search_all
from .knowledge.answer import extract
from .tools import intents, present
from .tools.builtin import registry_for
from .tools.loop import record

if TYPE_CHECKING:
    from .app import App

OFFLINE_TAG = "【离线模式 · offline】"
_GREETING = re.compile(r"^\s*(你好|您好|嗨|哈喽|hi|hello|hey|早上好|晚上好|在吗)[\s!！。.,，~？?]*$", re.I)

INTRO = (
    f"{OFFLINE_TAG}你好！我是学伴 studybot，陪你学习大语言模型。现在没有配置在线大模型，"
    "我会从内置学习笔记里找答案并注明出处。试试问：「什么是 LoRA？」「KV cache 占多少显存？」。"
    "配置 DASHSCOPE_API_KEY、QIANFAN_API_KEY 或 SPARK_API_PASSWORD 后即可使用在线模型（见 .env.example）。\n"
    "Hi! I'm studybot. No online model is configured, so I answer from the built-in study notes, with sources."
)
NOT_FOUND = (
    f"{OFFLINE_TAG}笔记中没有找到与这个问题相关的内容，我不会凭空编造答案。可以换个说法，"
    "或配置一个在线大模型（见 .env.example）。\n"
    "Not found in the study notes; I won't guess. Try rephrasing, or configure an online model."
)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):  # multimodal parts
                return " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
            return str(c or "")
    return ""


def last_assistant_text(messages: list[dict[str, Any]]) -> str:
    """The previous assistant reply (the last message is the current question)."""
    for m in reversed(messages[:-1]):
        if m.get("role") == "assistant":
            return str(m.get("content") or "")
    return ""


def format_sources(hits: list[Any]) -> str:
    lines = []
    for i, h in enumerate(hits, 1):
        c = h.chunk
        where = f"{c.path}:{c.start_line}-{c.end_line}"
        lines.append(f"[{i}] {c.title}" + (f" › {c.section}" if c.section else "") + f"（{where}）")
    return "\n".join(lines)


class OfflineEngine:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, messages: list[dict[str, Any]]) -> str:
        question = last_user_text(messages).strip()
        if not question:
            return f"{OFFLINE_TAG}请输入一个问题。/ Please type a question."
        if _GREETING.match(question):
            return INTRO
        routed = await self.route_tools(question, messages)
        if routed is not None:
            return routed
        hits = await search_all(self.app.kb, question, 5)  # with the server's own files, if any
        ans = extract(question, hits)
        if not ans.found:
            return NOT_FOUND
        return f"{OFFLINE_TAG}以下摘自学习笔记：\n{ans.text}\n\n参考 / Sources:\n{format_sources(ans.hits)}"

    async def route_tools(self, question: str, messages: list[dict[str, Any]]) -> str | None:
        """Answer with a tool when the request obviously asks for one; None otherwise."""
        registry = registry_for(self.app)
        followup = intents.quiz_followup(question, last_assistant_text(messages))
        if followup is not None:
            qid, chosen = followup
            result = await registry.call("quiz_question", {"id": qid, "reveal_answer": True})
            record(result)
            body = present.quiz_graded(result.data, chosen) if result.ok else present.as_text(result)
            return f"{OFFLINE_TAG}{body}"
        intent = intents.route(question)
        if intent is None or intent.tool not in registry:
            return None
        result = await registry.call(intent.tool, intent.arguments)
        record(result)
        return f"{OFFLINE_TAG}{present.as_text(result)}"
