"""A polite async HTTP fetcher for the news sources (httpx).

Politeness, per host (`host:port`):
- a minimum gap of `delay_s` between the starts of two requests (`FETCH_DELAY_S`); requests pass
  one by one through a per-host gate, so the gap holds however many tasks are waiting;
- at most `concurrency` requests in flight (`FETCH_CONCURRENCY`);
- an identifiable User-Agent unless the caller sets its own (Weibo wants a browser UA);
- timeouts (15 s read, 10 s connect by default).

Retries: on 5xx, 429 and 432 (and on timeouts / connection errors), 3 by default, with exponential
backoff (0.5 s, 1 s, 2 s), seeded jitter and `Retry-After` honoured (capped); never on other 4xx (403 and 404 are final).
Each retry goes through the politeness gate again.

Cache: `get(url, cache=True)` keeps 200 answers on disk by URL (paper pages never change once
issued), so a rerun costs no request; `forget(url)` drops an entry (used when a cached page
does not parse).

Time is injected: `clock()` (monotonic seconds) and `sleep(seconds)` default to
`time.monotonic` and `asyncio.sleep`, so tests drive a virtual clock and never wait.

Usage::

    async with Fetcher.from_settings(settings) as f:
        page = await f.get(url, cache=True)
        html = page.text
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from .types import FetchError

DEFAULT_USER_AGENT = "studybot/0.1 (xueban study assistant; daily news digest; polite fetcher; python-httpx)"  # ASCII: HTTP headers
RETRY_STATUSES: frozenset[int] = frozenset({429, 432, 500, 502, 503, 504})

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Page:
    """One HTTP answer (final after retries), or a cached copy of one."""

    url: str
    status: int
    headers: Mapping[str, str]
    content: bytes
    from_cache: bool = False

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").lower()

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    @property
    def text(self) -> str:
        return decode(self.content, self.content_type)

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class FetchStats:
    requests: int = 0  # requests sent (retries included)
    retries: int = 0
    cache_hits: int = 0
    max_in_flight: dict[str, int] = field(default_factory=dict)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w-]+)""", re.I)


def decode(content: bytes, content_type: str = "") -> str:
    """Declared charset (header, then <meta>), else UTF-8, else GB18030; never raises."""
    candidates: list[str] = []
    m = re.search(r"charset=([\w-]+)", content_type)
    if m:
        candidates.append(m.group(1))
    m2 = _META_CHARSET.search(content[:4096])
    if m2:
        candidates.append(m2.group(1).decode("ascii", "ignore"))
    candidates += ["utf-8", "gb18030"]
    for enc in candidates:
        enc = "gb18030" if enc.lower() in {"gb2312", "gbk"} else enc  # superset, same bytes
        try:
            return content.decode(enc)
        except (LookupError, UnicodeDecodeError):
            continue
    return content.decode("utf-8", "replace")


def host_of(url: str) -> str:
    return urlsplit(url).netloc.lower()


class Fetcher:
    def __init__(
        self,
        *,
        delay_s: float = 1.0,
        concurrency: int = 4,
        timeout_s: float = 15.0,
        connect_timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        user_agent: str = DEFAULT_USER_AGENT,
        cache_dir: Path | str | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        seed: int | None = 0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.delay_s = max(0.0, float(delay_s))
        self.concurrency = max(1, int(concurrency))
        self.retries = max(0, int(retries))
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.user_agent = user_agent
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.stats = FetchStats()
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._gates: dict[str, asyncio.Lock] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._next_at: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max(8, self.concurrency * 4), max_keepalive_connections=16),
            headers={"User-Agent": user_agent, "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"},
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Any, **kw: Any) -> Fetcher:
        """FETCH_DELAY_S, FETCH_CONCURRENCY, and a cache in `<data dir>/cache/http`."""
        kw.setdefault("delay_s", settings.fetch_delay_s)
        kw.setdefault("concurrency", settings.fetch_concurrency)
        kw.setdefault("cache_dir", settings.data_path / "cache" / "http")
        return cls(**kw)

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- public ----------------------------------------------------------------------

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        cache: bool = False,
        follow_redirects: bool = True,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
        retries: int | None = None,
        raise_for_status: bool = True,
    ) -> Page:
        """GET with politeness and retries. Raises `FetchError` on a final status >= 400
        (unless `raise_for_status=False`) and on transport failures."""
        if cache:
            hit = self._cache_read(url)
            if hit is not None:
                self.stats.cache_hits += 1
                return hit
        host = host_of(url)
        attempts = 1 + (self.retries if retries is None else max(0, retries))
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                resp = await self._send(host, url, headers, follow_redirects)
            except httpx.TimeoutException as e:
                if last:
                    raise FetchError(url, None, f"timeout ({type(e).__name__})") from e
                await self._backoff(attempt, None)
                continue
            except httpx.HTTPError as e:  # connection refused/reset, protocol errors
                if last:
                    raise FetchError(url, None, f"{type(e).__name__}: {e}") from e
                await self._backoff(attempt, None)
                continue
            page = Page(str(resp.url), resp.status_code, dict(resp.headers), resp.content)
            if resp.status_code in retry_statuses and not last:
                await self._backoff(attempt, resp.headers.get("retry-after"))
                continue
            if raise_for_status and resp.status_code >= 400:
                raise FetchError(url, resp.status_code, resp.reason_phrase or "error")
            if cache and resp.status_code == 200:
                self._cache_write(url, page)
            return page
        raise AssertionError("unreachable")  # the loop always returns or raises

    async def get_text(self, url: str, **kw: Any) -> str:
        return (await self.get(url, **kw)).text

    def forget(self, url: str) -> None:
        """Drop a cached copy (e.g. a page that did not parse: fetch it afresh next time)."""
        if self.cache_dir is None:
            return
        for p in self._cache_paths(url):
            p.unlink(missing_ok=True)

    # ---- politeness ------------------------------------------------------------------

    async def _send(self, host: str, url: str, headers: Mapping[str, str] | None,
                    follow_redirects: bool) -> httpx.Response:
        slot = self._slots.setdefault(host, asyncio.Semaphore(self.concurrency))
        async with slot:
            await self._wait_turn(host)
            n = self._in_flight.get(host, 0) + 1
            self._in_flight[host] = n
            self.stats.max_in_flight[host] = max(n, self.stats.max_in_flight.get(host, 0))
            self.stats.requests += 1
            try:
                return await self._client.get(url, headers=dict(headers or {}), follow_redirects=follow_redirects)
            finally:
                self._in_flight[host] -= 1

    async def _wait_turn(self, host: str) -> None:
        # One task at a time passes the gate and books the next start time: the gap between
        # two request starts to one host is at least delay_s.
        if self.delay_s <= 0:
            return
        gate = self._gates.setdefault(host, asyncio.Lock())
        async with gate:
            wait = self._next_at.get(host, -math.inf) - self._clock()
            if wait > 0:
                await self._sleep(wait)
            self._next_at[host] = self._clock() + self.delay_s

    async def _backoff(self, attempt: int, retry_after: str | None) -> None:
        self.stats.retries += 1
        # jitter: clients that failed together retry apart
        delay = min(self.backoff_max_s, self.backoff_s * (2 ** attempt) * (1 + 0.25 * self._rng.random()))
        hinted = _retry_after_s(retry_after)
        if hinted is not None:
            delay = max(delay, min(hinted, self.backoff_max_s))
        await self._sleep(delay)

    # ---- cache -----------------------------------------------------------------------

    def _cache_paths(self, url: str) -> tuple[Path, Path]:
        assert self.cache_dir is not None
        key = hashlib.sha256(url.encode()).hexdigest()
        d = self.cache_dir / key[:2]
        return d / f"{key}.body", d / f"{key}.json"

    def _cache_read(self, url: str) -> Page | None:
        if self.cache_dir is None:
            return None
        body, meta = self._cache_paths(url)
        try:
            info = json.loads(meta.read_text("utf-8"))
            content = body.read_bytes()
        except (OSError, ValueError):
            return None
        if info.get("url") != url:
            return None
        return Page(url, 200, {"content-type": info.get("content_type", "")}, content, from_cache=True)

    def _cache_write(self, url: str, page: Page) -> None:
        if self.cache_dir is None:
            return
        body, meta = self._cache_paths(url)
        try:
            body.parent.mkdir(parents=True, exist_ok=True)
            for path, data in ((body, page.content),
                               (meta, json.dumps({"url": url, "content_type": page.content_type}).encode())):
                tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)  # readers never see half a file
        except OSError:
            pass  # a cache that cannot be written only costs a refetch


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
