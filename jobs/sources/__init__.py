"""News sources for the daily digest: People's Daily, Weibo hot search, RSS.

Modules (parsers are pure; fetchers are async and take a `fetch.Fetcher`):
- `types`: `Article`, `HotTopic`, `Item`, `SourceFailure` and the errors
  (`SourceError`, `FetchError`, `LayoutChangedError`, `CookieNeededError`, `SourceUnavailableError`);
- `fetch`: the polite fetcher (per-host gap and cap, retries, on-disk cache, injected clock);
- `people_daily`: `parse_layout`, `parse_article`, `fetch_day`;
- `weibo`: `parse_hot_search`, `parse_mobile`, `parse_summary`, `fetch_hot`;
- `rss`: `parse_feed`, `fetch_rss`.

Only the plain types are imported here, so `import jobs.sources` stays cheap (no httpx).
"""

from .types import (
    Article,
    CookieNeededError,
    FetchError,
    HotTopic,
    Item,
    LayoutChangedError,
    SourceError,
    SourceFailure,
    SourceUnavailableError,
)

__all__ = [
    "Article",
    "CookieNeededError",
    "FetchError",
    "HotTopic",
    "Item",
    "LayoutChangedError",
    "SourceError",
    "SourceFailure",
    "SourceUnavailableError",
]
