"""The study knowledge base: built-in notes plus user folders, hybrid retrieval, offline answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from pathlib import Path

from .answer import OfflineAnswer, extract, is_relevant
from .embed import Embedder, get_embedder
from .index import IndexStore, KnowledgeIndex, Progress
from .retrieve import Hit, Retriever

__all__ = ["Hit", "KnowledgeBase", "OfflineAnswer", "extra_knowledge", "search_all"]

# knowledge bases searched besides the built-in one for the request in progress (a server's own
# files from /kb add): set by the assistant, read by every search on the way, the offline engine's too
extra_knowledge: ContextVar[tuple[KnowledgeBase, ...]] = ContextVar("extra_knowledge", default=())


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
        return await asyncio.to_thread(lambda: self.search_sync(query, k, mode, fast=fast))

    async def answer_offline(self, question: str, k: int = 5) -> OfflineAnswer:
        hits = await self.search(question, k)
        return extract(question, hits)


async def search_all(kb: KnowledgeBase, query: str, k: int = 5, *, fast: bool = False,
                     extra: Sequence[KnowledgeBase] | None = None) -> list[Hit]:
    """Search `kb` and the extra knowledge bases (default: those of the request in progress) and
    merge: relevant passages first, then by fused score. Every index fuses the same methods by
    reciprocal rank, so their scores are on one scale."""
    more = tuple(extra if extra is not None else extra_knowledge.get())
    if not more:
        return await kb.search(query, k, fast=fast)
    found = await asyncio.gather(*(x.search(query, k, fast=fast) for x in (kb, *more)))
    hits = [h for hs in found for h in hs]
    hits.sort(key=lambda h: (is_relevant(h), h.score), reverse=True)
    return hits[:k]
