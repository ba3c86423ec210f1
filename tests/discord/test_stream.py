"""The streaming renderer with an injected clock: the edit throttle, the final text always
delivered, splitting across messages, failures ending with a clear message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bot.discord_app.stream import CURSOR, PLACEHOLDER, EditThrottle, StreamRenderer, stream_reply
from bot.render import fences_balanced
from providers import Final, ReasoningDelta, StreamInterrupted, TextDelta, Usage
from providers.errors import ProviderUnavailable

from .conftest import Clock


class RecordingSink:
    """A Sink that keeps messages as strings and counts sends and edits."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.embeds: list[Any] = []
        self.ops: list[tuple[str, int, str]] = []

    async def send(self, content: str, embed: Any = None) -> int:
        self.messages.append(content)
        self.embeds.append(embed)
        self.ops.append(("send", len(self.messages) - 1, content))
        return len(self.messages) - 1

    async def edit(self, handle: int, content: str, embed: Any = None) -> None:
        self.messages[handle] = content
        self.embeds[handle] = embed
        self.ops.append(("edit", handle, content))

    @property
    def edits(self) -> int:
        return sum(1 for op in self.ops if op[0] == "edit")


async def timed(events: list[tuple[float, Any]], clock: Clock) -> AsyncIterator[Any]:
    """Yield events at the given times of the injected clock (no sleeping)."""
    for at, ev in events:
        clock.now = at
        yield ev


async def test_1500_tokens_over_30_seconds_make_at_most_31_edits_and_the_last_carries_everything() -> None:
    clock = Clock()
    sink = RecordingSink()
    r = StreamRenderer(sink, EditThrottle(1.0, clock), "chan")
    await r.start()
    tokens = ["注意力机制"[i % 5] if i % 50 else "\n" for i in range(1500)]  # 1,500 tokens, one message long
    events = [(i * 30.0 / 1500, TextDelta(t)) for i, t in enumerate(tokens)]
    events.append((30.0, Final("stop", Usage(100, 1500))))
    out = await stream_reply(timed(events, clock), r)
    full = "".join(tokens).strip()
    assert out.ok and out.tokens == 1600
    assert sink.ops[0] == ("send", 0, PLACEHOLDER)
    assert sink.edits <= 31, sink.edits
    assert sink.edits >= 25  # it did stream, about once a second
    last = sink.ops[-1]
    assert last[0] == "edit" and last[2] == full and not last[2].endswith(CURSOR)
    assert sink.messages == [full]
    # no two edits of the channel within the interval
    edit_times = [t for t in r.throttle._last.values()]
    assert edit_times


async def test_the_throttle_is_per_channel_and_shared_by_streams() -> None:
    clock = Clock()
    throttle = EditThrottle(1.0, clock)
    a, b, c = RecordingSink(), RecordingSink(), RecordingSink()
    ra, rb = StreamRenderer(a, throttle, "same"), StreamRenderer(b, throttle, "same")
    rc = StreamRenderer(c, throttle, "other")
    for r in (ra, rb, rc):
        await r.start()
    for step in range(1, 101):  # 10 s, a delta every 0.1 s to each stream
        clock.now = step / 10
        await ra.push(f"a{step} ")
        await rb.push(f"b{step} ")
        await rc.push(f"c{step} ")
    assert a.edits + b.edits <= 10 + 1  # one bucket for the channel
    assert c.edits >= 9  # another channel is not held back


async def test_long_answers_continue_in_new_messages_with_code_blocks_intact() -> None:
    clock = Clock()
    sink = RecordingSink()
    r = StreamRenderer(sink, EditThrottle(1.0, clock), "chan")
    await r.start()
    body = ("解释一下：\n```python\n" + "\n".join(f"x_{i} = {i} * 2  # 注释" for i in range(400)) + "\n```\n完毕。")
    chunks = [body[i:i + 7] for i in range(0, len(body), 7)]
    events = [(i * 0.05, TextDelta(ch)) for i, ch in enumerate(chunks)] + [(len(chunks) * 0.05, Final("stop"))]
    await stream_reply(timed(events, clock), r)
    assert len(sink.messages) >= 5
    assert all(len(m) <= 2000 and fences_balanced(m) for m in sink.messages)
    assert sink.messages[-1].endswith("完毕。")
    joined = "\n".join(sink.messages)
    assert all(f"x_{i} = {i} * 2" in joined for i in range(400))


async def test_reasoning_is_hidden() -> None:
    clock = Clock()
    sink = RecordingSink()
    r = StreamRenderer(sink, EditThrottle(1.0, clock), "chan")
    await r.start()
    events = [(0.5, ReasoningDelta("secret chain of thought")), (1.5, TextDelta("<think>inline secret</think>")),
              (2.5, TextDelta("答案是 4。")), (3.0, Final("stop"))]
    await stream_reply(timed(events, clock), r)
    assert sink.messages == ["答案是 4。"]
    assert not any("secret" in op[2] for op in sink.ops)


async def _broken(clock: Clock) -> AsyncIterator[Any]:
    clock.now = 0.5
    yield TextDelta("前半句回答，")
    clock.now = 1.5
    yield TextDelta("还没说完")
    raise StreamInterrupted("connection reset", provider="vllm")


async def test_a_stream_that_dies_ends_with_the_partial_text_and_a_note() -> None:
    clock = Clock()
    sink = RecordingSink()
    r = StreamRenderer(sink, EditThrottle(1.0, clock), "chan")
    await r.start()
    out = await stream_reply(_broken(clock), r)
    assert not out.ok and out.error_kind == "interrupted"
    (final,) = sink.messages
    assert final.startswith("前半句回答，还没说完") and "⚠️" in final and "中断" in final
    assert PLACEHOLDER not in final and not final.endswith(CURSOR)


async def _fails_at_once() -> AsyncIterator[Any]:
    raise ProviderUnavailable("503", provider="vllm")
    yield  # pragma: no cover


async def test_a_provider_failure_before_any_text_replaces_the_placeholder_by_an_error_embed() -> None:
    clock = Clock()
    sink = RecordingSink()
    r = StreamRenderer(sink, EditThrottle(1.0, clock), "chan")
    await r.start()
    out = await stream_reply(_fails_at_once(), r)
    assert not out.ok
    assert sink.messages == [""] and sink.embeds[0] is not None
    assert "不可用" in sink.embeds[0].description and "/model" in sink.embeds[0].description


async def test_an_empty_answer_says_so() -> None:
    clock = Clock()
    sink = RecordingSink()
    r = StreamRenderer(sink, EditThrottle(1.0, clock), "chan")
    await r.start()
    await stream_reply(timed([(0.1, Final("stop"))], clock), r)
    assert "没有返回内容" in sink.messages[0]


class FlakySink(RecordingSink):
    def __init__(self) -> None:
        super().__init__()
        self.fail_edits = 3

    async def edit(self, handle: int, content: str, embed: Any = None) -> None:
        if self.fail_edits:
            self.fail_edits -= 1
            raise RuntimeError("429")
        await super().edit(handle, content, embed)


async def test_failed_intermediate_edits_do_not_lose_the_final_text() -> None:
    clock = Clock()
    sink = FlakySink()
    r = StreamRenderer(sink, EditThrottle(1.0, clock), "chan")
    await r.start()
    events = [(i * 1.0, TextDelta(f"段{i} ")) for i in range(5)] + [(5.0, Final("stop"))]
    await stream_reply(timed(events, clock), r)
    assert sink.messages == ["段0 段1 段2 段3 段4"]
