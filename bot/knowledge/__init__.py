"""The study knowledge base: built-in notes plus user folders, hybrid retrieval, offline answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from pathlib import Path

from .answer import OfflineAnswer, extract, is_relevant
from .embed import Embedder, get_embedder
from .index import IndexStore, KnowledgeIndex, Progress
from .retrieve import Hit, Retriever

__all__ = ["Hit", "KnowledgeBase", "OfflineAnswer", "begin_request", "end_request", "search_all"]


@dataclass
class _Request:
    """What every search within one request shares: the knowledge bases searched besides the
    built-in one (a server's own files from /kb add), and the results so far, so the offline
    engine deep inside the router reuses the search `ask` already made instead of repeating it."""

    extra: tuple[KnowledgeBase, ...] = ()
    found: dict[tuple[object, ...], list[Hit]] = field(default_factory=dict)


_request: ContextVar[_Request | None] = ContextVar("knowledge_request", default=None)


def begin_request(extra: KnowledgeBase | None = None) -> Token[_Request | None]:
    return _request.set(_Request((extra,) if extra is not None else ()))


def end_request(token: Token[_Request | None]) -> None:
    _request.reset(token)


class KnowledgeBase:
    """Loads (or builds once) the index for a scope and answers searches off the event loop."""

    def __init__(self, data_dir: Path, embedding_model: str | None = None, scope: str = "main",
                 progress: Progress | None = None, notify: Callable[[str], None] | None = None) -> None:
        self.data_dir = data_dir
        self.embedding_model = embedding_model or None
        self.scope = scope
        self.progress = progress
        self.notify = notify
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        return get_embedder(self.embedding_model)

    def store(self) -> IndexStore:
        return IndexStore(self.data_dir, self.embedder, self.scope, self.progress)

    def retriever(self) -> Retriever:
        with self._lock:
            if self._retriever is None:
                st = self.store()
                idx = st.ensure()
                if st.notice and self.notify:
                    self.notify(st.notice)
                self._retriever = Retriever(idx, self.embedder)
            return self._retriever

    def index(self, paths: list[Path] | None = None) -> KnowledgeIndex:
        """Add folders (if any) and bring the index up to date; returns it."""
        st = self.store()
        if paths:
            st.add_sources(paths)
        idx = st.ensure()
        if st.notice and self.notify:
            self.notify(st.notice)
        with self._lock:
            self._retriever = Retriever(idx, self.embedder)
        return idx

    def search_sync(self, query: str, k: int = 5, mode: str = "hybrid", *, fast: bool = False) -> list[Hit]:
        return self.retriever().search(query, k, mode, fast=fast)

    async def search(self, query: str, k: int = 5, mode: str = "hybrid", *, fast: bool = False) -> list[Hit]:
        if self._retriever is None and not self.embedding_model:
            getattr(get_embedder(), "preload", lambda: None)()  # the bundled model loads while the index does
        return await asyncio.to_thread(lambda: self.search_sync(query, k, mode, fast=fast))

    async def answer_offline(self, question: str, k: int = 5) -> OfflineAnswer:
        hits = await self.search(question, k)
        return extract(question, hits)


async def search_all(kb: KnowledgeBase, query: str, k: int = 5, *, fast: bool = False,
                     extra: Sequence[KnowledgeBase] | None = None) -> list[Hit]:
    """Search `kb` and the extra knowledge bases (default: those of the request in progress) and
    merge: relevant passages first, then by fused score. Every index fuses the same methods by
    reciprocal rank, so their scores are on one scale. Within a request, the same search is made once."""
    req = _request.get()
    more = tuple(extra if extra is not None else req.extra if req else ())
    key = (id(kb), *map(id, more), query, k, fast)
    if req is not None and key in req.found:
        return list(req.found[key])
    if more:
        found = await asyncio.gather(*(x.search(query, k, fast=fast) for x in (kb, *more)))
        hits = sorted((h for hs in found for h in hs), key=lambda h: (is_relevant(h), h.score), reverse=True)[:k]
    else:
        hits = await kb.search(query, k, fast=fast)
    if req is not None:
        req.found[key] = hits
    return list(hits)
