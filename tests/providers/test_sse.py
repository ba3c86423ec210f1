"""The SSE decoder of chat streams: line rules (property-based) and the real transport over
loopback with awkward framing (CRLF, comments, multi-line data, bytes split anywhere)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers import errors as E
from providers.sse import MalformedEvent, sse_lines, sse_objects
from providers.types import Final, TextDelta
from tests.stubs import openai_wire as W
from tests.stubs.http_server import Reply

# the loopback stub and provider factory fixtures of the transport's own tests
from .test_openai_compat import MSGS, events_until_error, made, make, server  # noqa: F401


async def pieces_of(raw: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(raw), size):
        yield raw[i:i + size]


async def decode(text: str, size: int = 1 << 20) -> list[dict[str, Any]]:
    return [obj async for obj in sse_objects(sse_lines(pieces_of(text.encode(), size)))]


def render(objs: list[dict[str, Any]], *, space: list[bool], comment: list[bool], multiline: list[bool],
           crlf: bool, done: bool) -> str:
    nl = "\r\n" if crlf else "\n"
    out = []
    for i, obj in enumerate(objs):
        if comment[i % len(comment)]:
            out.append(": keep-alive" + nl)
        prefix = "data: " if space[i % len(space)] else "data:"
        text = json.dumps(obj, ensure_ascii=False, indent=1 if multiline[i % len(multiline)] else None)
        out.extend(prefix + line + nl for line in text.split("\n"))
        out.append(nl)
    if done:
        out.append("data: [DONE]" + nl + nl)
    return "".join(out)


json_objects = st.lists(st.dictionaries(st.sampled_from(["id", "content", "n", "x y"]),
                                        st.one_of(st.integers(), st.text(max_size=8), st.none(),
                                                  st.sampled_from(["\u2028", "a\x85b", "注意\r\n力"])), max_size=3),
                        max_size=6)
flags = st.lists(st.booleans(), min_size=1, max_size=4)


@given(json_objects, flags, flags, flags, st.booleans(), st.booleans(), st.integers(1, 40))
async def test_every_event_comes_back_whatever_the_framing(objs: list[dict[str, Any]], space: list[bool],
                                                          comment: list[bool], multiline: list[bool], crlf: bool,
                                                          done: bool, size: int) -> None:
    text = render(objs, space=space, comment=comment, multiline=multiline, crlf=crlf, done=done)
    assert await decode(text, size) == objs


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"])
async def test_only_cr_and_lf_end_a_line(sep: str) -> None:
    # model output with Unicode line separators stays inside its JSON string
    obj = {"content": f"一{sep}二"}
    assert await decode(f"data: {json.dumps(obj, ensure_ascii=False)}\n\n", 3) == [obj]


async def test_done_ends_the_stream_and_the_rest_is_dropped() -> None:
    text = 'data: {"a": 1}\n\ndata: [DONE]\n\ndata: {"late": true}\n\n'
    assert await decode(text) == [{"a": 1}]


async def test_error_events_and_a_last_event_without_its_blank_line() -> None:
    assert await decode('event: error\ndata: {"message": "overloaded"}\n\n') == [{"error": {"message": "overloaded"}}]
    assert await decode('data: {"error": {"code": 1}}') == [{"error": {"code": 1}}]
    assert await decode("event: ping\n\n: nothing\n\n") == []


@pytest.mark.parametrize("payload", ['{"choices": [ {broken', "[1, 2]", '"text"', "null"])
async def test_a_payload_that_is_not_a_json_object_is_malformed(payload: str) -> None:
    with pytest.raises(MalformedEvent):
        await decode(f"data: {payload}\n\n")


def awkward_chunks(pieces: list[str], size: int) -> list[bytes]:
    """The stream with CRLF line ends, comments and multi-line data, cut every `size` bytes
    (through UTF-8 sequences and line ends alike)."""
    objs = [W.chunk_obj("")] + [W.chunk_obj(p) for p in pieces] + [W.chunk_obj(None, finish="stop"),
                                                                  W.chunk_obj(None, usage=(7, len(pieces)),
                                                                              empty_choices=True)]
    text = render(objs, space=[True, False], comment=[False, True, False], multiline=[False, False, True],
                  crlf=True, done=True)
    raw = text.encode()
    return [raw[i:i + size] for i in range(0, len(raw), size)]


@pytest.mark.parametrize("size", [1, 3, 7, 64])
async def test_the_transport_reads_awkward_framing_over_loopback(make, size: int) -> None:  # noqa: F811
    pieces = ["注意力", "机制\n", "把每个词", "和其他词联系起来。"]
    p = make("openai", Reply(200, headers=W.SSE, chunks=awkward_chunks(pieces, size)))
    events = [ev async for ev in p.chat(MSGS)]
    assert "".join(ev.text for ev in events if isinstance(ev, TextDelta)) == "".join(pieces)
    final = events[-1]
    assert isinstance(final, Final) and final.finish_reason == "stop"
    assert final.usage is not None and (final.usage.prompt_tokens, final.usage.completion_tokens) == (7, 4)


async def test_a_chunk_of_the_wrong_shape_is_a_provider_error_not_a_crash(make) -> None:  # noqa: F811
    chunks = W.sse([W.chunk_obj("好的"), {"choices": ["not an object"]}], done=True)
    p = make("openai", Reply(200, headers=W.SSE, chunks=chunks))
    events, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.ProviderUnavailable and "malformed" in err.message
    assert [ev.text for ev in events if isinstance(ev, TextDelta)] == ["好的"]
