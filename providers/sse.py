"""Server-sent events to JSON objects, for OpenAI-style chat streams.

The `openai` SDK still makes the request (one pooled client per base URL, auth, status errors);
only the body of a stream is read here. The SDK turns every chunk into pydantic models, which
is about half the CPU of a streamed reply (bench/providers.py `micro.*`); a chat stream needs
four fields of each chunk, which plain dicts give for a fraction of that.

Lines follow the SSE rules: only CR, LF and CRLF end a line (not U+2028, NEL ... which `str.splitlines`
and httpx's `aiter_lines` also split on, and which model output may contain), `data:` with or
without a space (Spark omits it), several `data:` lines joined by newlines, `:` comments and
unknown fields ignored, a blank line ends an event.
`[DONE]` ends the stream; `event: error` (or a body with `error`) comes out as `{"error": ...}`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any


class MalformedEvent(ValueError):
    """A `data:` payload that is not a JSON object."""


def _decode(event: str | None, payload: str) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except ValueError:
        raise MalformedEvent(f"not JSON: {payload[:60]!r}") from None
    if not isinstance(obj, dict):
        raise MalformedEvent(f"not a JSON object: {payload[:60]!r}")
    if event == "error" and "error" not in obj:
        return {"error": obj}
    return obj


async def sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The lines of a byte stream cut anywhere, without their ends."""
    rest = b""
    async for chunk in chunks:
        if rest:
            chunk = rest + chunk
        lines = chunk.splitlines(keepends=True)  # bytes split on CR, LF and CRLF only
        rest = lines.pop()
        # a last line without its end, or ending in CR (maybe the first half of CRLF), waits for more
        if rest.endswith(b"\n"):
            lines.append(rest)
            rest = b""
        for line in lines:
            yield line.rstrip(b"\r\n").decode("utf-8", "replace")
    if rest:
        yield rest.rstrip(b"\r\n").decode("utf-8", "replace")


async def sse_objects(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """JSON objects of the events in `lines` (already split, without line ends), until `[DONE]`.
    After `[DONE]` the rest of the body is read and dropped, so the connection can be reused."""
    data: list[str] = []
    event: str | None = None
    done = False
    async for line in lines:
        if done:
            continue
        if line:
            if line[0] == ":":  # a comment (keep-alive)
                continue
            field, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            continue
        if data:  # a blank line ends the event
            payload = data[0] if len(data) == 1 else "\n".join(data)
            data, ev, event = [], event, None
            if payload == "[DONE]":
                done = True
                continue
            yield _decode(ev, payload)
        else:
            event = None
    if data and not done:  # the last event without its blank line
        payload = "\n".join(data)
        if payload != "[DONE]":
            yield _decode(event, payload)
