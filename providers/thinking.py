"""Split `<think>...</think>` reasoning out of streamed text, across chunk boundaries."""

from __future__ import annotations

from .types import ReasoningDelta, TextDelta

_OPEN, _CLOSE = "<think>", "</think>"


class ThinkSplitter:
    __slots__ = ("_inside", "_pending")

    def __init__(self) -> None:
        self._inside = False
        self._pending = ""  # a possible partial tag held back

    def feed(self, text: str) -> list[TextDelta | ReasoningDelta]:
        if not self._pending and not self._inside and "<" not in text:
            return [TextDelta(text)] if text else []  # fast path: almost every chunk
        buf = self._pending + text
        self._pending = ""
        out: list[TextDelta | ReasoningDelta] = []
        while buf:
            tag = _CLOSE if self._inside else _OPEN
            i = buf.find(tag)
            if i >= 0:
                if i:
                    out.append(ReasoningDelta(buf[:i]) if self._inside else TextDelta(buf[:i]))
                buf = buf[i + len(tag):]
                self._inside = not self._inside
                continue
            # keep a tail that could be the start of the tag
            keep = next((k for k in range(min(len(tag) - 1, len(buf)), 0, -1) if tag.startswith(buf[-k:])), 0)
            body, self._pending = (buf[:-keep], buf[-keep:]) if keep else (buf, "")
            if body:
                out.append(ReasoningDelta(body) if self._inside else TextDelta(body))
            break
        return out

    def flush(self) -> list[TextDelta | ReasoningDelta]:
        rest, self._pending = self._pending, ""
        if not rest:
            return []
        return [ReasoningDelta(rest) if self._inside else TextDelta(rest)]
