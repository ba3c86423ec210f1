"""RSS/Atom feeds (`NEWS_RSS_URLS`) as a general fallback for news, with feedparser.

`await fetch_rss(urls, fetcher, now, max_age=timedelta(hours=72)) -> RssResult` fetches every
feed through the polite `Fetcher` (feedparser itself never touches the network: it gets bytes),
and returns `Article`s (`source="rss"`, `page` = feed title, `published_at` aware UTC,
paragraphs from the entry content or summary with HTML stripped). Items older than `max_age`,
undated items (many public feeds are stale for years) and items dated more than a day ahead are
rejected; the same link in two feeds is kept once. A feed that fails is listed in
`RssResult.errors`; the result iterates over its articles like a list.

`parse_feed(content, url, now, max_age)` is the pure part.
"""

from __future__ import annotations

import asyncio
import calendar
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import feedparser
from selectolax.lexbor import LexborHTMLParser

from .fetch import Fetcher
from .types import Article, LayoutChangedError, SourceFailure

SOURCE = "rss"
MAX_AGE = timedelta(hours=72)
_WS = re.compile(r"[ \t\u3000\xa0]+")


@dataclass
class RssResult:
    articles: list[Article] = field(default_factory=list)
    errors: list[SourceFailure] = field(default_factory=list)
    rejected: int = 0  # stale, undated or future items dropped

    def __iter__(self) -> Iterator[Article]:
        return iter(self.articles)

    def __len__(self) -> int:
        return len(self.articles)


def _paragraphs(html: str) -> tuple[str, ...]:
    if not html:
        return ()
    tree = LexborHTMLParser(html)
    for junk in tree.css("script, style"):
        junk.decompose()
    nodes = tree.css("p")
    chunks = [n.text(deep=True) for n in nodes] if nodes else \
        (tree.body.text(deep=True, separator="\n") if tree.body else html).split("\n")
    out = []
    for c in chunks:
        c = _WS.sub(" ", c).strip()
        if c:
            out.append(c)
    return tuple(out)


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        st = entry.get(key)
        if st:
            try:
                return datetime.fromtimestamp(calendar.timegm(st), UTC)
            except (OverflowError, ValueError, TypeError):
                continue
    return None


def parse_feed(content: bytes | str, url: str, now: datetime, max_age: timedelta = MAX_AGE
               ) -> tuple[list[Article], int]:
    """(fresh articles, number rejected). Raises LayoutChangedError when it is not a feed."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    data = content.encode("utf-8") if isinstance(content, str) else content  # bytes: never a URL fetch
    feed = feedparser.parse(data)
    if not feed.entries and not feed.get("version"):  # HTML, JSON, an error page ...
        raise LayoutChangedError(SOURCE, url, "feed entries", ["rss/item", "atom/entry"], "not a feed")
    feed_title = _WS.sub(" ", str(feed.feed.get("title", "") or "")).strip()
    out: list[Article] = []
    rejected = 0
    for e in feed.entries:
        when = _when(e)
        title = _WS.sub(" ", str(e.get("title", "") or "")).strip()
        if when is None or now - when > max_age or when - now > timedelta(days=1) or not title:
            rejected += 1
            continue
        body = ""
        if e.get("content"):
            body = str(e.content[0].get("value", "") or "")
        body = body or str(e.get("summary", "") or "")
        out.append(Article(
            kicker="", title=title, subtitle="", byline=str(e.get("author", "") or "").strip(),
            paragraphs=_paragraphs(body), url=str(e.get("link", "") or ""), page=feed_title,
            page_name=feed_title, date=when.astimezone(now.tzinfo).date(), source=SOURCE, published_at=when,
        ))
    return out, rejected


async def fetch_rss(urls: Sequence[str], fetcher: Fetcher, now: datetime,
                    max_age: timedelta = MAX_AGE) -> RssResult:
    result = RssResult()

    async def one(url: str) -> tuple[list[Article], int]:
        try:
            page = await fetcher.get(url, headers={"Accept": "application/rss+xml, application/atom+xml, "
                                                             "application/xml;q=0.9, */*;q=0.5"})
            return parse_feed(page.content, url, now, max_age)
        except Exception as e:  # one dead feed must not hide the others
            result.errors.append(SourceFailure.of(SOURCE, url, e))
            return [], 0

    seen: set[str] = set()
    for articles, rejected in await asyncio.gather(*(one(u) for u in urls)):
        result.rejected += rejected
        for a in articles:
            key = a.url or a.title
            if key not in seen:
                seen.add(key)
                result.articles.append(a)
    return result
