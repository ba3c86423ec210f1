"""Rate limits and the daily token budget (no discord import: plain logic, injected clocks).

- `RateLimiter`: a sliding one-minute window per key (user or server); refusing costs nothing.
- `TokenBudget`: tokens used per server and local day, kept in the store's kv table
  (scope `guild:<id>` or `dm:<user>`, key `tokens:<YYYY-MM-DD>`), so a restart does not reset it.
  A budget of 0 means no limit. When the day's budget is used up the adapter answers with the
  offline engine (free) instead of refusing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from bot.store import Store

WINDOW_S = 60.0


class RateLimiter:
    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                 window_s: float = WINDOW_S) -> None:
        self.per_minute = max(1, int(per_minute))
        self.clock = clock
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float | None:
        """Record a request; None when allowed, else the seconds until one is allowed again."""
        now = self.clock()
        q = self._hits.setdefault(key, deque())
        while q and now - q[0] >= self.window_s:
            q.popleft()
        if len(q) >= self.per_minute:
            return max(0.1, self.window_s - (now - q[0]))
        q.append(now)
        if len(self._hits) > 10_000:  # forget idle keys now and then: memory stays bounded
            for k in [k for k, v in self._hits.items() if not v or now - v[-1] >= self.window_s]:
                del self._hits[k]
        return None

    def undo(self, key: str) -> None:
        """Give back the last hit (a request refused by a later check should not count)."""
        q = self._hits.get(key)
        if q:
            q.pop()


def estimate_tokens(*texts: str | None) -> int:
    """A rough token count when the provider reports no usage: about 2 characters a token
    (Chinese runs near 1, English near 4)."""
    return max(1, math.ceil(sum(len(t or "") for t in texts) / 2))


class TokenBudget:
    def __init__(self, store_fn: Callable[[], object], daily: int, tz: ZoneInfo | str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._store_fn = store_fn  # async () -> Store: the App opens the store lazily
        self.daily = int(daily)
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.clock = clock
        self._lock = asyncio.Lock()

    def day(self) -> str:
        return datetime.fromtimestamp(self.clock(), self.tz).date().isoformat()

    async def _store(self) -> Store:
        return await self._store_fn()  # type: ignore[misc,no-any-return]

    async def used(self, scope: str) -> int:
        raw = await (await self._store()).get_value(scope, f"tokens:{self.day()}")
        try:
            return int(raw or 0)
        except ValueError:
            return 0

    async def exhausted(self, scope: str) -> bool:
        return self.daily > 0 and await self.used(scope) >= self.daily

    async def remaining(self, scope: str) -> int | None:
        if self.daily <= 0:
            return None
        return max(0, self.daily - await self.used(scope))

    async def charge(self, scope: str, tokens: int) -> int:
        """Add tokens to today's count; returns the new total."""
        if tokens <= 0:
            return await self.used(scope)
        async with self._lock:  # read-modify-write: one writer per process
            total = await self.used(scope) + int(tokens)
            await (await self._store()).set_value(scope, f"tokens:{self.day()}", str(total))
            return total
