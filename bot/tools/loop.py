"""The tool loop: offer the tools, run what the model asks for, feed the results back, repeat
up to `max_rounds`, and stream the final answer.

- Tool calls are validated (JSON, pydantic, known tool) by the registry; a bad call becomes a
  tool error message the model reads (role "tool"), never an exception.
- Independent calls of one round run concurrently.
- Text streams as it arrives, in every round; tool-call fragments and the intermediate
  `Final`s stay inside: callers see text, one `ToolNote` (when tools ran), then one `Final`.
- After `max_rounds` rounds with tool calls the model is asked once more without tools, so a
  model that calls tools forever costs at most `max_rounds + 1` requests.
- A provider that rejects the tools (a 400 mentioning tools, e.g. vLLM without
  --enable-auto-tool-choice) is asked again once without them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from providers import BadRequest, Final, ReasoningDelta, TextDelta, ToolCallDelta, Usage

from .registry import Registry, ToolResult, ToolRuns

if TYPE_CHECKING:
    from providers.router import Attempt, Router

ROUND_LIMIT_NOTE = ("（工具调用次数已达上限，未能得到最终回答。/ The tool-call limit was reached before a final "
                    "answer.）")
_TOOLS_REJECTED = re.compile(r"tool|function", re.I)

# The tools that ran for the current answer, whoever ran them (the loop, or the offline engine
# routing intents inside the provider call): set by the caller, read after the answer.
current_runs: ContextVar[ToolRuns | None] = ContextVar("studybot_tool_runs", default=None)


def record(result: ToolResult) -> None:
    runs = current_runs.get()
    if runs is not None:
        runs.add(result)


@dataclass(slots=True)
class ToolNote:
    """Which tools ran for this answer; adapters show it (a dim line, a footer)."""

    tools: list[dict[str, Any]] = field(default_factory=list)  # [{"name","arguments","ok"}]

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(t["name"] for t in self.tools))

    def line(self) -> str:
        failed = {t["name"] for t in self.tools if not t["ok"]}
        return "🔧 " + ", ".join(n + (" ✗" if n in failed else "") for n in self.names)


@dataclass(slots=True)
class _Round:
    text: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    final: Final | None = None

    def add_call(self, ev: ToolCallDelta) -> None:
        call = self.calls.setdefault(ev.index, {"id": None, "name": "", "arguments": ""})
        if ev.id:
            call["id"] = ev.id
        if ev.name and call["name"] != ev.name:  # some servers repeat the whole name in every fragment
            call["name"] += ev.name
        call["arguments"] += ev.arguments or ""


def tools_rejected(err: BadRequest) -> bool:
    return bool(_TOOLS_REJECTED.search(err.message or ""))


def _echo_arguments(raw: str) -> str:
    """Arguments as echoed in the assistant message: servers that re-parse history (vLLM chat
    templates) fail on invalid JSON, so a broken call is echoed as {} (the error says what was sent)."""
    try:
        return raw if isinstance(json.loads(raw or "{}"), dict) else "{}"
    except ValueError:
        return "{}"


def _sum_usage(a: Usage | None, b: Usage | None) -> Usage | None:
    if a is None:
        return b
    if b is None:
        return a
    return Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens)


async def run(
    router: Router,
    messages: list[dict[str, Any]],
    registry: Registry,
    *,
    max_rounds: int,
    only: str | None = None,
    trace: list[Attempt] | None = None,
    purpose: str = "chat",
    runs: ToolRuns | None = None,
    **opts: Any,
) -> AsyncIterator[TextDelta | ReasoningDelta | ToolNote | Final]:
    """Stream an answer, running tools on the way. `messages` is extended in place with the
    assistant tool-call turns and the tool results."""
    runs = runs if runs is not None else ToolRuns()
    schemas = registry.schemas() if len(registry) and max_rounds > 0 else None
    usage: Usage | None = None
    final: Final | None = None
    rounds = 0
    retried_without_tools = False
    spoke = False  # text already reached the caller in an earlier round
    while True:
        offer = schemas if rounds < max_rounds else None
        cur = _Round()
        try:
            async for ev in router.chat(messages, tools=offer, only=only, trace=trace, purpose=purpose, **opts):
                if isinstance(ev, ToolCallDelta):
                    cur.add_call(ev)
                elif isinstance(ev, Final):
                    cur.final = ev
                else:
                    if isinstance(ev, TextDelta):
                        if spoke and not cur.text and ev.text:
                            yield TextDelta("\n")  # keep "let me check" apart from the answer that follows
                        cur.text.append(ev.text)
                    yield ev
        except BadRequest as e:
            if offer and not retried_without_tools and tools_rejected(e) and not cur.text:
                retried_without_tools = True
                schemas = None  # this provider takes no tools: ask again, plainly
                continue
            raise
        usage = _sum_usage(usage, cur.final.usage if cur.final else None)
        final = cur.final or final
        calls = [c for _, c in sorted(cur.calls.items()) if c["name"] or c["arguments"]]
        if not calls or offer is None:
            if offer is None and calls and not cur.text:
                # asked without tools and still only calling them: stop with a clear message
                yield TextDelta(ROUND_LIMIT_NOTE)
            break
        rounds += 1
        spoke = spoke or bool(cur.text)
        for i, c in enumerate(calls):
            c["id"] = c["id"] or f"call_{rounds}_{i}"
        messages.append({"role": "assistant", "content": "".join(cur.text) or None, "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": c["name"] or "unknown", "arguments": _echo_arguments(
                c["arguments"])}} for c in calls]})
        results = await asyncio.gather(*(registry.call(c["name"], c["arguments"], c["id"]) for c in calls))
        for r in results:
            runs.add(r)
            messages.append({"role": "tool", "tool_call_id": r.call_id, "content": r.content})
    if runs.results:
        yield ToolNote(runs.summaries())
    f = final or Final("stop")
    yield Final(f.finish_reason, usage, f.request_id, f.provider, f.model)
