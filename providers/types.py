"""The provider interface (DESIGN §1): messages in, a stream of ChatEvents out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]  # OpenAI chat shape: {"role": ..., "content": ..., ["tool_calls"|"tool_call_id"]}


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    """Reasoning (`reasoning_content`, `<think>`): kept out of the answer, available to who wants it."""

    text: str


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""  # a fragment of the JSON arguments


@dataclass(slots=True)
class Final:
    finish_reason: str | None = None
    usage: Usage | None = None
    request_id: str | None = None
    provider: str | None = None
    model: str | None = None


ChatEvent = TextDelta | ReasoningDelta | ToolCallDelta | Final


@dataclass(slots=True)
class ModelInfo:
    id: str
    owned_by: str | None = None


@dataclass(slots=True)
class Health:
    ok: bool
    status: str  # ok | auth | rate_limited | unreachable | error
    latency_ms: float
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    name: str
    default_model: str

    def chat(
        self,
        messages: list[Message],
        *,
        model: str | None = None,
        stream: bool = True,
        tools: list[dict[str, Any]] | None = None,
        **opts: Any,
    ) -> AsyncIterator[ChatEvent]: ...

    async def health(self) -> Health: ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Reply:
    """A whole reply collected from a stream (see `collect`)."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    final: Final | None = None


async def collect(events: AsyncIterator[ChatEvent]) -> Reply:
    """Drain a chat stream into a Reply; tool-call fragments are joined by index."""
    reply = Reply()
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    async for ev in events:
        if isinstance(ev, TextDelta):
            text.append(ev.text)
        elif isinstance(ev, ReasoningDelta):
            reasoning.append(ev.text)
        elif isinstance(ev, ToolCallDelta):
            call = calls.setdefault(ev.index, {"id": None, "name": "", "arguments": ""})
            if ev.id:
                call["id"] = ev.id
            if ev.name:
                call["name"] += ev.name if call["name"] != ev.name else ""
            call["arguments"] += ev.arguments
        elif isinstance(ev, Final):
            reply.final = ev
    reply.text = "".join(text)
    reply.reasoning = "".join(reasoning)
    reply.tool_calls = [calls[i] for i in sorted(calls)]
    return reply
