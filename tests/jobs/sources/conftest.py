"""Helpers for the source tests: a virtual clock and fetchers that never really sleep."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from jobs.sources.fetch import Fetcher

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"
SHARED_FIXTURES = Path(__file__).resolve().parents[4] / "shared" / "fixtures"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text("utf-8")


class VirtualClock:
    """Monotonic time that moves only when every task is asleep.

    Sleepers wait in a queue ordered by wake-up time; a driver task lets the other tasks run
    (and `settle()`, when set, finish: the politeness tests wait there until every request
    already sent has reached the stub, so the stub stamps each request with the virtual time
    at which it was sent), then jumps to the earliest wake-up time and wakes those sleepers."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.settle: Callable[[], Awaitable[None]] | None = None
        self._queue: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._driver: asyncio.Task[None] | None = None

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._queue, (self.now + max(0.0, seconds), self._seq, fut))
        if self._driver is None or self._driver.done():
            self._driver = asyncio.create_task(self._drive())
        await fut

    async def _drive(self) -> None:
        while self._queue:
            for _ in range(50):  # let runnable tasks reach their own sleep first
                await asyncio.sleep(0)
            if self.settle is not None:
                await self.settle()
            target = self._queue[0][0]
            self.now = max(self.now, target)
            while self._queue and self._queue[0][0] <= target:
                _, _, fut = heapq.heappop(self._queue)
                if not fut.done():
                    fut.set_result(None)


async def wait_until(cond: Callable[[], bool], spins: int = 100_000) -> None:
    """Yield to the loop (no wall-clock sleep) until `cond()` holds."""
    for _ in range(spins):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def make_fetcher(clock: VirtualClock) -> AsyncIterator[Callable[..., Fetcher]]:
    made: list[Fetcher] = []

    def make(**kw: object) -> Fetcher:
        kw.setdefault("delay_s", 0.0)
        kw.setdefault("clock", clock.time)
        kw.setdefault("sleep", clock.sleep)
        f = Fetcher(**kw)  # type: ignore[arg-type]
        made.append(f)
        return f

    yield make
    for f in made:
        await f.aclose()
