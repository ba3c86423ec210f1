"""News and hot-search feeds for the tools, cached per day in memory.

The digest pipeline owns fetching and parsing (`jobs.sources.weibo`, `jobs.sources.people_daily`,
`jobs.summarize`); these adapters call it and turn its objects into plain rows. The fetch
functions are injectable (tests, other deployments).

`news_today` must answer within a chat turn, so it reads page 01 (要闻) and the first few of
its articles, not the whole paper the digest reads; the fetcher's disk cache is shared with
the digest, so a paper already read costs no request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from .registry import ToolError

if TYPE_CHECKING:
    from ..config import Settings

HotRow = dict[str, Any]  # {"rank", "word", "heat", "label", "flag"}
NewsRow = dict[str, Any]  # {"title", "url", "page", "summary"}
FetchHot = Callable[[], Awaitable[list[HotRow]]]
FetchNews = Callable[[date], Awaitable[list[NewsRow]]]

NEWS_ARTICLES = 6  # articles of page 01 read for their summaries
NEWS_SUMMARY_CHARS = 90


class DailyCache:
    """Values per (key, local day); an optional TTL refreshes live lists within the day.
    Concurrent loads of one key share a single fetch; failures are not cached."""

    def __init__(self, today: Callable[[], date], monotonic: Callable[[], float] = time.monotonic) -> None:
        self.today = today
        self.monotonic = monotonic
        self._values: dict[tuple[str, date], tuple[float, Any]] = {}
        self._locks: dict[tuple[str, date], asyncio.Lock] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[Any]], ttl_s: float | None = None,
                  day: date | None = None) -> Any:
        k = (key, day or self.today())
        lock = self._locks.setdefault(k, asyncio.Lock())
        async with lock:
            hit = self._values.get(k)
            if hit is not None and (ttl_s is None or self.monotonic() - hit[0] < ttl_s):
                return hit[1]
            value = await load()
            # keep only the newest day's entries: yesterday's lists are of no use to a chat
            for old in [o for o in self._values if o[1] != k[1]]:
                self._values.pop(old, None)
                self._locks.pop(old, None)
            self._values[k] = (self.monotonic(), value)
            return value


def _source_error(what: str, e: Exception) -> ToolError:
    return ToolError(f"无法获取{what} / cannot fetch {what}: {e}"[:400])


def pipeline_fetch_hot(settings: Settings) -> FetchHot:
    """The hot list through `jobs.sources.weibo` (WEIBO_HOT_URL → mobile → summary fallbacks)."""
    async def fetch() -> list[HotRow]:
        from jobs.sources.fetch import Fetcher
        from jobs.sources.types import SourceError
        from jobs.sources.weibo import fetch_hot_from_settings

        try:
            async with Fetcher.from_settings(settings) as fetcher:
                hot = await fetch_hot_from_settings(settings, fetcher)
        except SourceError as e:
            raise _source_error("微博热搜", e) from None
        return [{"rank": t.rank, "word": t.word, "heat": t.heat, "label": t.label, "flag": t.flag}
                for t in hot.topics]

    return fetch


def pipeline_fetch_news(settings: Settings, articles: int = NEWS_ARTICLES) -> FetchNews:
    """Page 01 of the day's People's Daily and summaries of its first articles."""
    async def fetch(day: date) -> list[NewsRow]:
        from jobs.sources.fetch import Fetcher
        from jobs.sources.people_daily import layout_url, parse_article, parse_layout
        from jobs.sources.types import SourceError
        from jobs.summarize import summarize

        url = layout_url(settings.people_daily_base_url, day, 1)
        try:
            async with Fetcher.from_settings(settings) as fetcher:
                layout = parse_layout((await fetcher.get(url, cache=True)).text, url)

                async def one(title: str, link: str) -> NewsRow:
                    try:
                        art = parse_article((await fetcher.get(link, cache=True)).text, link)
                    except (SourceError, ValueError):  # one article failing still leaves its title
                        return {"title": title, "url": link, "page": layout.label, "summary": ""}
                    return {"title": art.full_title or title, "url": link, "page": art.page or layout.label,
                            "summary": summarize(art.text, NEWS_SUMMARY_CHARS, title=art.title)}

                picked = layout.articles[:articles]
                rows = list(await asyncio.gather(*(one(a.title, a.url) for a in picked)))
                rows += [{"title": a.title, "url": a.url, "page": layout.label, "summary": ""}
                         for a in layout.articles[articles:]]
        except SourceError as e:
            raise _source_error("人民日报", e) from None
        return rows

    return fetch


def local_today(clock: Callable[[], datetime], tz: Any) -> Callable[[], date]:
    return lambda: clock().astimezone(tz).date()
