"""Call records: what every provider attempt cost and how it ended.

The router calls a `Recorder` synchronously and cheaply; `BufferedRecorder` queues records
and a background task hands them in batches to a sink (the store), off the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call is made for: stamped on its call records."""

    user_id: str | None = None
    guild_id: str | None = None


@dataclass(slots=True)
class CallRecord:
    started_at: float  # unix seconds
    provider: str
    model: str
    purpose: str
    ttft_ms: float | None
    duration_ms: float
    tokens_in: int | None
    tokens_out: int | None
    outcome: str  # ok | error | interrupted | cancelled
    error_kind: str | None = None
    error_code: str | None = None
    request_id: str | None = None
    user_id: str | None = None  # who the call was made for, so a user's records can be exported and forgotten
    guild_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Recorder = Callable[[CallRecord], None]
Sink = Callable[[list[CallRecord]], Awaitable[None]]


class BufferedRecorder:
    """Collects records in memory; `flush()` or the background task writes them to the sink."""

    def __init__(self, sink: Sink, *, batch: int = 200, interval_s: float = 0.5,
                 close_timeout_s: float = 10.0) -> None:
        self.sink = sink
        self.batch = batch
        self.interval_s = interval_s
        self.close_timeout_s = close_timeout_s
        self._pending: list[CallRecord] = []
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False

    def __call__(self, record: CallRecord) -> None:
        self._pending.append(record)
        if self._task is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        if len(self._pending) >= self.batch and self._wake:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await self.sink(batch)
        except Exception:  # a full disk must not break chat; say so in the log
            log.exception("could not store %d call records", len(batch))

    async def aclose(self) -> None:
        """Stop the background task and write what is left. A batch being written is finished,
        not cancelled half-way (cancelling it would lose those records)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            self._closing = True
            if self._wake is not None:
                self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), self.close_timeout_s)
            except TimeoutError:  # a sink that hangs: give up on it rather than hang shutdown
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            finally:
                self._closing = False
        await self.flush()
