"""Wiring: settings → store, knowledge base, providers and router. Adapters get an App."""

from __future__ import annotations

import logging
import sys
from importlib import resources
from typing import TYPE_CHECKING, Any

from .config import ConfigError, Settings

if TYPE_CHECKING:
    from providers.records import BufferedRecorder
    from providers.router import Router

    from .knowledge import KnowledgeBase
    from .store import Store

log = logging.getLogger(__name__)

TERMINAL_USER = "terminal:local"  # the one user of the terminal and the CLI: quiz, roadmap, records, data


def prompt_text(name: str) -> str:
    """A prompt template from prompts/system/ (shipped in the wheel)."""
    return (resources.files("prompts") / "system" / f"{name}.md").read_text(encoding="utf-8")


def stderr_progress(stage: str, done: int, total: int) -> None:
    """Progress of long work on stderr (stdout stays clean for --json)."""
    if total <= 0:
        return
    width = 24
    filled = int(width * done / total)
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\r{stage}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
    sys.stderr.flush()


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None
        self._kb: KnowledgeBase | None = None
        self._scoped_kbs: dict[str, KnowledgeBase] = {}
        self._router: Router | None = None
        self._recorder: BufferedRecorder | None = None

    # -- parts, built on first use ------------------------------------------------------------------

    async def store(self) -> Store:
        if self._store is None:
            from .store import Store

            self._store = await Store.open(self.settings.db_url)
        return self._store

    @property
    def kb(self) -> KnowledgeBase:
        if self._kb is None:
            from .knowledge import KnowledgeBase

            self._kb = KnowledgeBase(self.settings.data_path, self.settings.embedding_model,
                                     progress=stderr_progress, notify=lambda m: print(m, file=sys.stderr))
        return self._kb

    def scoped_kb(self, scope: str) -> KnowledgeBase:
        """Another knowledge base in the data dir (a server's files from /kb add), kept loaded."""
        if scope not in self._scoped_kbs:
            from .knowledge import KnowledgeBase

            self._scoped_kbs[scope] = KnowledgeBase(self.settings.data_path, self.settings.embedding_model, scope=scope)
        return self._scoped_kbs[scope]

    def guild_kb(self, guild_id: int | str | None) -> KnowledgeBase | None:
        """The server's own knowledge base, when it has one."""
        if not guild_id:
            return None
        scope = f"guild-{guild_id}"
        if scope not in self._scoped_kbs and not (self.settings.data_path / "index" / scope).is_dir():
            return None
        return self.scoped_kb(scope)

    def build_provider(self, name: str) -> Any:
        from providers import build_provider
        from providers.errors import ProviderError

        from .offline_engine import OfflineEngine

        if name not in self.settings.known_providers:
            raise ConfigError(f"--provider: unknown provider {name!r}; allowed: {', '.join(self.settings.known_providers)}")
        try:
            return build_provider(name, self.settings.env, extra_urls=self.settings.extra_provider_urls,
                                  offline_engine=OfflineEngine(self))
        except ProviderError as e:
            raise ConfigError(f"{name}: {e.message}") from None

    async def router(self) -> Router:
        if self._router is None:
            from providers.records import BufferedRecorder
            from providers.router import Router

            store = await self.store()
            self._recorder = BufferedRecorder(store.add_call_records)
            chain = self.settings.provider_chain
            providers = {n: self.build_provider(n) for n in chain}
            self._router = Router(providers, chain, recorder=self._recorder)
        return self._router

    async def ensure_provider(self, name: str) -> Router:
        """Make sure `name` can be pinned with --provider even when it is not in the chain."""
        router = await self.router()
        if name not in router.providers:
            router.add(name, self.build_provider(name))
        return router

    async def flush_records(self) -> None:
        """Write the call records still queued (they are written in the background otherwise)."""
        if self._recorder is not None:
            await self._recorder.flush()

    async def aclose(self) -> None:
        if self._recorder is not None:
            await self._recorder.aclose()
        if self._router is not None:
            await self._router.aclose()
        if self._store is not None:
            await self._store.close()
