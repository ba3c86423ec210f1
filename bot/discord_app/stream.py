"""The streaming renderer: an answer grows in Discord messages by edits, throttled per channel.

- At most one edit per `interval` (1 s) per channel, shared by every stream in that channel
  (Discord's edit buckets are per channel); an edit that is not allowed yet is skipped, never
  queued: the next delta or the final edit shows the newer text anyway.
- The final text is always delivered (the final edit ignores the throttle).
- Long answers continue in new messages at the 2000-character limit without breaking code
  blocks (`bot.render.split_message`); reasoning (`<think>`) is hidden; every text is scrubbed.
- A failure (provider error, an interrupted stream, a bug) ends with a clear final message:
  the partial answer and a note, or an error embed; never a placeholder left "thinking".

The renderer talks to a `Sink` (send a message, edit a message): Discord's messages and
interaction responses in production, a recording fake in tests. Time is injected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from providers import Final, ReasoningDelta, StreamInterrupted, TextDelta
from providers.errors import ProviderError

from ..errors import ConfigError
from ..render import MESSAGE_LIMIT, EmbedSpec, error_embed, hide_reasoning, scrub, split_message

log = logging.getLogger(__name__)

EDIT_INTERVAL_S = 1.0
CURSOR = " ⏳"
PLACEHOLDER = "⏳ 思考中… / thinking…"
EMPTY = "（模型没有返回内容 / the model returned no text）"


class Sink(Protocol):
    async def send(self, content: str, embed: EmbedSpec | None = None) -> Any: ...

    async def edit(self, handle: Any, content: str, embed: EmbedSpec | None = None) -> None: ...


class EditThrottle:
    """One edit per `interval` seconds per channel, for all the streams of a bot."""

    def __init__(self, interval: float = EDIT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}

    def try_acquire(self, channel: str) -> bool:
        now = self.clock()
        last = self._last.get(channel)
        if last is not None and now - last < self.interval:
            return False
        self._last[channel] = now
        return True

    def mark(self, channel: str) -> None:
        """An edit or send that happened anyway (the final one): the others wait from here."""
        self._last[channel] = self.clock()


@dataclass
class StreamStats:
    sends: int = 0
    edits: int = 0
    skipped: int = 0  # deltas that did not cause an edit (throttled)


class StreamRenderer:
    def __init__(self, sink: Sink, throttle: EditThrottle, channel: str, *, limit: int = MESSAGE_LIMIT,
                 placeholder: str | None = PLACEHOLDER) -> None:
        self.sink = sink
        self.throttle = throttle
        self.channel = channel
        self.split_at = limit - len(CURSOR)  # same cut points while streaming and at the end
        self.placeholder = placeholder
        self.text = ""
        self.handles: list[Any] = []
        self.shown: list[tuple[str, EmbedSpec | None]] = []
        self.stats = StreamStats()
        self.done = False

    async def start(self) -> None:
        """Show the placeholder (a channel reply). Interaction responses skip this: Discord's
        'thinking…' state is their placeholder."""
        if self.placeholder and not self.handles:
            self.handles.append(await self.sink.send(self.placeholder))
            self.shown.append((self.placeholder, None))
            self.stats.sends += 1
            self.throttle.mark(self.channel)

    async def status(self, text: str) -> None:
        """A throttled status line in place of the answer (before any text arrived)."""
        if self.handles and not self.visible() and self.throttle.try_acquire(self.channel):
            try:
                await self._show([(text, None)])
            except Exception:
                log.warning("stream: status edit failed", exc_info=True)

    def visible(self) -> str:
        return scrub(hide_reasoning(self.text)).strip()

    async def push(self, delta: str) -> None:
        self.text += delta
        if not delta or not self.throttle.try_acquire(self.channel):
            self.stats.skipped += 1
            return
        parts = split_message(self.visible(), self.split_at)
        if not parts:
            return
        parts[-1] += CURSOR
        try:
            await self._show([(p, None) for p in parts])
        except Exception:  # an intermediate edit may fail (rate limit, network): the final one retries
            log.warning("stream: intermediate edit failed", exc_info=True)

    async def finish(self, note: str | None = None) -> list[Any]:
        body = self.visible() or EMPTY
        if note:
            body = f"{body}\n\n{note}"
        await self._final([(p, None) for p in split_message(body, self.split_at)])
        return self.handles

    async def fail(self, message: str, todo: str = "", *, detail: str = "") -> list[Any]:
        """End with what was said so far plus a warning; or an error embed when nothing was."""
        body = self.visible()
        if body:
            parts = split_message(f"{body}\n\n⚠️ {message}", self.split_at)
            await self._final([(p, None) for p in parts])
        else:
            await self._final([("", error_embed(message, todo, detail=detail))])
        return self.handles

    async def _final(self, parts: list[tuple[str, EmbedSpec | None]]) -> None:
        self.done = True
        for attempt in range(2):
            try:
                await self._show(parts)
                break
            except Exception:
                log.warning("stream: final edit failed (attempt %d)", attempt + 1, exc_info=True)
        self.throttle.mark(self.channel)

    async def _show(self, parts: list[tuple[str, EmbedSpec | None]]) -> None:
        """Make the messages show `parts`: edit the ones that changed, send the new ones."""
        for i, (content, embed) in enumerate(parts):
            if i < len(self.handles):
                if self.shown[i] != (content, embed):
                    await self.sink.edit(self.handles[i], content, embed)
                    self.shown[i] = (content, embed)
                    self.stats.edits += 1
            else:
                self.handles.append(await self.sink.send(content, embed))
                self.shown.append((content, embed))
                self.stats.sends += 1


@dataclass
class StreamOutcome:
    ok: bool
    text: str = ""
    tokens: int | None = None  # reported usage, when the provider gave it
    provider: str | None = None
    model: str | None = None
    error_kind: str | None = None
    tools: list[str] = field(default_factory=list)


async def stream_reply(events: AsyncIterator[Any], renderer: StreamRenderer, *,
                       note: str | None = None) -> StreamOutcome:
    """Drive a renderer from an Assistant.chat stream (TextDelta, ReasoningDelta, ToolNote, Final);
    `note` (e.g. the budget fallback) is added under the answer."""
    final: Final | None = None
    notes: list[str] = [f"-# {note}"] if note else []
    tools: list[str] = []
    thinking_shown = False
    try:
        async for ev in events:
            if isinstance(ev, TextDelta):
                await renderer.push(ev.text)
            elif isinstance(ev, ReasoningDelta):
                if not thinking_shown:
                    thinking_shown = True  # reasoning stays hidden; one edit says the model is thinking
                    await renderer.status("🤔 推理中… / reasoning…")
            elif isinstance(ev, Final):
                final = ev
            elif hasattr(ev, "line") and hasattr(ev, "tools"):  # bot.tools.loop.ToolNote
                notes.append(f"-# {ev.line()}")
                tools = list(getattr(ev, "names", []))
    except StreamInterrupted as e:
        await renderer.fail(e.user_message())
        return StreamOutcome(False, renderer.visible(), None, e.provider, None, e.kind, tools)
    except ConfigError as e:  # the chosen provider cannot be built (no key ...)
        await renderer.fail(str(e), "用 /model 换一个已配置的模型 / pick a configured model with /model")
        return StreamOutcome(False, renderer.visible(), None, None, None, "config", tools)
    except ProviderError as e:
        await renderer.fail(e.user_message(), "稍后再试，或用 /model 换一个模型 / try again later, or pick another "
                            "model with /model", detail=e.kind)
        return StreamOutcome(False, renderer.visible(), None, e.provider, None, e.kind, tools)
    except asyncio.CancelledError:
        await asyncio.shield(renderer.fail("机器人正在重启，回答被中断 / the bot is restarting; the answer was cut "
                                           "off"))
        raise
    except Exception as e:
        log.exception("stream: the reply failed")
        await renderer.fail("内部错误，回答未完成 / internal error; the answer is incomplete",
                            "请稍后再试 / please try again", detail=type(e).__name__)
        return StreamOutcome(False, renderer.visible(), None, None, None, "internal", tools)
    if final is not None and final.finish_reason == "length":
        notes.append("-# ✂️ 回答达到长度上限 / the answer hit the length limit")
    await renderer.finish("\n".join(notes) or None)
    usage = final.usage if final else None
    return StreamOutcome(True, renderer.visible(), usage.total_tokens if usage else None,
                         final.provider if final else None, final.model if final else None, None, tools)
