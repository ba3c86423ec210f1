"""The embedded offline engine as a provider: no network, no key.

Generation is delegated to an injected `OfflineEngine` (the core's retrieval answerer), so
this package stays free of knowledge-base code. It never invents facts: the engine answers
from retrieved notes and tools, or says it cannot.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .presets import PRESETS
from .types import ChatEvent, Final, Health, Message, ModelInfo, TextDelta, Usage

OfflineEngine = Callable[[list[Message]], Awaitable[str]]

_PIECES = re.compile(r"[^。！？!?\n]*[。！？!?\n]?")


async def _no_engine(messages: list[Message]) -> str:
    return "离线模式：未加载知识库。/ Offline mode: no knowledge base loaded."


class OfflineProvider:
    transport = "offline"

    def __init__(self, engine: OfflineEngine | None = None) -> None:
        self.preset = PRESETS["offline"]
        self.name = "offline"
        self.default_model = self.preset.default_model
        self.engine = engine or _no_engine

    async def chat(self, messages: list[Message], *, model: str | None = None, stream: bool = True,
                   tools: list[dict[str, Any]] | None = None, **opts: Any) -> AsyncIterator[ChatEvent]:
        text = await self.engine(messages)
        # stream sentence by sentence so adapters render it like any other provider
        for piece in _PIECES.findall(text) if stream else [text]:
            if piece:
                yield TextDelta(piece)
        prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
        yield Final("stop", Usage(prompt_chars // 2, len(text) // 2), None, self.name, self.default_model)

    async def health(self) -> Health:
        t0 = time.perf_counter()
        return Health(True, "ok", (time.perf_counter() - t0) * 1000)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(self.default_model, "studybot")]

    async def aclose(self) -> None:
        return None
