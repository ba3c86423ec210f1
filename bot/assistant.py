"""Chat and grounded Q&A over the router: the core that every adapter calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from providers import Final, ReasoningDelta, StreamInterrupted, TextDelta
from providers.errors import ProviderError
from providers.records import Caller

from .app import prompt_text
from .knowledge import begin_request, end_request, search_all
from .knowledge.answer import is_relevant
from .render import scrub
from .tools import loop as tool_loop
from .tools.builtin import registry_for
from .tools.loop import ToolNote
from .tools.registry import ToolRuns

if TYPE_CHECKING:
    from providers.router import Attempt, Router

    from .app import App
    from .knowledge import Hit, KnowledgeBase

MAX_QUESTION_CHARS = 4000
HISTORY_CHAR_BUDGET = 6000  # roughly 3-4k tokens of earlier turns
PERSONA_MAX_CHARS = 1500


@dataclass
class AskResult:
    answer: str
    provider: str | None
    model: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float = 0.0
    note: str | None = None  # e.g. the answer was cut off
    ok: bool = True
    usage: dict[str, int] | None = None  # tokens of the answering call, when the provider reported them

    def as_dict(self) -> dict[str, Any]:
        d = {"answer": self.answer, "provider": self.provider, "model": self.model, "sources": self.sources,
             "tools": self.tools, "attempts": self.attempts, "latency_ms": round(self.latency_ms, 1)}
        if self.usage:
            d["usage"] = self.usage
        if self.note:
            d["note"] = self.note
        return d


def passages_block(hits: list[Hit]) -> str:
    if not hits:
        return "（笔记中没有找到相关资料 / no passages found）"
    parts = []
    for i, h in enumerate(hits, 1):
        c = h.chunk
        parts.append(f"[{i}] {c.title} › {c.section}\n{c.text}")
    return "\n\n".join(parts)


def with_persona(system: str, persona: str | None) -> str:
    """The channel's persona (set by the server's admins) after the built-in rules, which still win."""
    persona = (persona or "").strip()[:PERSONA_MAX_CHARS]
    if not persona:
        return system
    return f"{system}\n\n本频道的设定（服务器管理员提供，不得违反以上规则）/ this channel's persona:\n{persona}"


def trim_history(history: list[dict[str, str]], budget: int = HISTORY_CHAR_BUDGET) -> list[dict[str, str]]:
    """The most recent turns that fit the budget, oldest first."""
    out: list[dict[str, str]] = []
    used = 0
    for m in reversed(history):
        n = len(m.get("content") or "")
        if used + n > budget:
            break
        out.append(m)
        used += n
    return list(reversed(out))


class Assistant:
    def __init__(self, app: App) -> None:
        self.app = app

    def _tool_rounds(self, router: Router, provider: str | None) -> int:
        """How many tool rounds to offer: none when only the offline engine can answer (it routes
        obvious intents to the tools itself)."""
        names = [provider] if provider else router.chain
        if all(n == "offline" for n in names):
            return 0
        return self.app.settings.tool_max_rounds

    @staticmethod
    def _with_tools(system: str, rounds: int) -> str:
        return system + "\n" + prompt_text("tools") if rounds else system

    async def ask(self, question: str, *, provider: str | None = None, model: str | None = None,
                  kb: KnowledgeBase | None = None, user_id: str | None = None, guild_id: str | None = None,
                  on_delta: Callable[[str], None] | None = None) -> AskResult:
        """A grounded answer. `kb` is searched besides the built-in notes (a server's own files);
        `model` applies to the chosen (or first) provider; the ids go on the call records."""
        token = begin_request(kb)
        try:
            return await self._ask(question, provider, model, user_id, guild_id, on_delta)
        finally:
            end_request(token)

    async def _ask(self, question: str, provider: str | None, model: str | None, user_id: str | None,
                   guild_id: str | None, on_delta: Callable[[str], None] | None) -> AskResult:
        t0 = time.perf_counter()
        question = (question or "").strip()
        if not question:
            return AskResult("请输入一个问题。/ Please type a question.", None, ok=False)
        note = None
        if len(question) > MAX_QUESTION_CHARS:
            question = question[:MAX_QUESTION_CHARS]
            note = f"问题过长，只使用了前 {MAX_QUESTION_CHARS} 个字符 / question cut to {MAX_QUESTION_CHARS} characters"
        # a model will answer: segment the query fast; the offline engine searches for itself
        online = (provider or self.app.settings.provider_chain[0]) != "offline"
        # providers (the store, the SDK) start up while the notes are searched in a worker thread
        router_ready = asyncio.ensure_future(self.app.ensure_provider(provider) if provider else self.app.router())
        try:
            hits = await search_all(self.app.kb, question, 5, fast=online)
        except BaseException:
            router_ready.cancel()
            raise
        relevant = [h for h in hits if is_relevant(h)][:4]
        router = await router_ready
        rounds = self._tool_rounds(router, provider)
        system = self._with_tools(prompt_text("ask").replace("{passages}", passages_block(relevant)), rounds)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        trace: list[Attempt] = []
        text: list[str] = []
        final: Final | None = None
        ok = True
        runs = ToolRuns()
        token = tool_loop.current_runs.set(runs)  # the offline engine records the tools it routes to here
        try:
            async for ev in tool_loop.run(router, messages, registry_for(self.app), max_rounds=rounds, only=provider,
                                          trace=trace, purpose="ask", runs=runs, model=model,
                                          caller=Caller(user_id, guild_id)):
                if isinstance(ev, TextDelta):
                    text.append(ev.text)
                    if on_delta:
                        on_delta(ev.text)
                elif isinstance(ev, Final):
                    final = ev
        except StreamInterrupted as e:
            note = f"{e.user_message()}"
        except ProviderError as e:
            ok = False
            text = [f"抱歉，模型暂时无法回答：{e.user_message()}"]
        finally:
            tool_loop.current_runs.reset(token)
        answering = final.provider if final else (trace[-1].provider if trace else None)
        # the offline engine cites what it used; model answers cite the passages we gave them
        sources = [h.as_source() for h in (relevant if answering != "offline" else
                                           [] if runs.results else [h for h in hits if is_relevant(h)])]
        usage = final.usage if final else None
        return AskResult(scrub("".join(text)), answering, final.model if final else None, sources,
                         runs.summaries(), [a.as_dict() for a in trace], (time.perf_counter() - t0) * 1000, note, ok,
                         {"prompt_tokens": usage.prompt_tokens or 0, "completion_tokens": usage.completion_tokens or 0}
                         if usage else None)

    async def chat(self, conversation_key: str, text: str, *, provider: str | None = None, model: str | None = None,
                   persona: str | None = None, kb: KnowledgeBase | None = None, user_id: str | None = None,
                   guild_id: str | None = None) -> AsyncIterator[TextDelta | ReasoningDelta | ToolNote | Final]:
        """Stream a chat reply; earlier turns of the same conversation go into the prompt, the
        channel's `persona` into the system prompt. Tools run on the way; when any ran, a
        `ToolNote` comes just before the `Final`."""
        store = await self.app.store()
        conv = await store.conversation(conversation_key, user_id, guild_id)
        history = trim_history(await store.recent_messages(conv, 40))
        router = await (self.app.ensure_provider(provider) if provider else self.app.router())
        rounds = self._tool_rounds(router, provider)
        system = with_persona(self._with_tools(prompt_text("chat"), rounds), persona)
        messages = [{"role": "system", "content": system}, *history,
                    {"role": "user", "content": text}]
        reply: list[str] = []
        runs = ToolRuns()
        token = tool_loop.current_runs.set(runs)
        kb_token = begin_request(kb)  # the notes tool and the offline engine search it too
        try:
            async for ev in tool_loop.run(router, messages, registry_for(self.app), max_rounds=rounds, only=provider,
                                          purpose="chat", runs=runs, model=model, caller=Caller(user_id, guild_id)):
                if isinstance(ev, TextDelta):
                    reply.append(ev.text)
                yield ev
        finally:
            for reset in (lambda: end_request(kb_token), lambda: tool_loop.current_runs.reset(token)):
                try:
                    reset()
                except ValueError:  # the consumer closed us from another context: nothing to restore there
                    pass
            await store.add_message(conv, "user", text, user_id)
            if reply:
                await store.add_message(conv, "assistant", "".join(reply))
