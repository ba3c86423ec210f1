"""Plain data produced by the news sources, and the errors they raise.

Everything here is untrusted text scraped from the web, kept verbatim as data: callers that
show it to people pass it through `bot.render.scrub` first.

- `Article`: one news article (People's Daily page article or an RSS item).
- `HotTopic`: one Weibo hot-search entry; `label` is Weibo's own category when it gives one
  (综艺, 社会 ...), `flag` its badge (新/热/沸/爆).
- `Item`: the source-neutral view (`Article.to_item()`, `HotTopic.to_item()`).
- `SourceFailure`: a failure that did not stop the run (one article that answered 500),
  reported as `{"source", "url", "error"}`.
- Errors: `SourceError` (base), `FetchError` (HTTP status or transport), `LayoutChangedError`
  (a parse found nothing: names the URL, the field and the selectors tried), `CookieNeededError`
  (Weibo wants a visitor/login cookie), `SourceUnavailableError` (every fallback failed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Literal


@dataclass(frozen=True)
class Item:
    """Source-neutral record: what summarise/classify/digest need from any source."""

    source: str
    kind: Literal["article", "hot_topic"]
    title: str
    url: str
    text: str = ""
    published_at: datetime | date | None = None
    rank: int | None = None
    heat: int | None = None
    raw_category: str | None = None  # 版名 for paper articles, Weibo's label for topics
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Article:
    kicker: str  # 引题 (h3), may be empty
    title: str  # h1
    subtitle: str  # 副题 (h2), may be empty
    byline: str  # p.sec without the date span, may be empty
    paragraphs: tuple[str, ...]  # body, editor lines and empty paragraphs removed
    url: str
    page: str = ""  # "01版：要闻" (paper) or the feed title (RSS)
    page_no: str = ""  # "01"
    page_name: str = ""  # "要闻"
    date: date | None = None
    source: str = "people_daily"
    published_at: datetime | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.paragraphs)

    @property
    def full_title(self) -> str:
        """Kicker, title and subtitle joined the way the paper prints them."""
        return " ".join(p for p in (self.kicker, self.title, self.subtitle) if p)

    def to_item(self) -> Item:
        return Item(
            source=self.source, kind="article", title=self.title, url=self.url, text=self.text,
            published_at=self.published_at or self.date, raw_category=self.page_name or self.page or None,
            extra={"kicker": self.kicker, "subtitle": self.subtitle, "byline": self.byline,
                   "page": self.page, "page_no": self.page_no},
        )


@dataclass(frozen=True)
class HotTopic:
    rank: int  # 1-based position among real topics
    word: str
    heat: int | None
    label: str | None  # Weibo's own category (parent part, "暂无" → None), if present
    url: str
    is_ad: bool = False
    pinned: bool = False
    flag: str | None = None  # badge: 新 / 热 / 沸 / 爆 (荐 / 商 mark ads)
    note: str = ""

    def to_item(self) -> Item:
        return Item(
            source="weibo", kind="hot_topic", title=self.word, url=self.url, text=self.note, rank=self.rank,
            heat=self.heat, raw_category=self.label, extra={"flag": self.flag, "pinned": self.pinned},
        )


@dataclass(frozen=True)
class SourceFailure:
    """One failure inside a run that otherwise went on (JSON shape of digest `errors`)."""

    source: str
    url: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def of(cls, source: str, url: str, exc: BaseException) -> SourceFailure:
        return cls(source, url, str(exc) or type(exc).__name__)


class SourceError(Exception):
    """Base of every error a news source raises."""


class FetchError(SourceError):
    """An HTTP request failed for good (after the retries that were allowed)."""

    def __init__(self, url: str, status: int | None, reason: str) -> None:
        self.url = url
        self.status = status
        self.reason = reason
        what = f"HTTP {status}" if status is not None else "request failed"
        super().__init__(f"{what}: {reason} ({url})")


class LayoutChangedError(SourceError):
    """A parse found nothing where the page layout promised something."""

    def __init__(self, source: str, url: str, field: str, tried: Sequence[str], detail: str = "") -> None:
        self.source = source
        self.url = url
        self.field = field
        self.tried = list(tried)
        self.detail = detail
        msg = (f"{source}: page layout changed? no {field} found at {url}; "
               f"selectors tried: {', '.join(self.tried) or '-'}")
        if detail:
            msg += f" ({detail})"
        super().__init__(msg + f" / 页面结构可能已变化：{url} 未找到 {field}")


class CookieNeededError(SourceError):
    """Weibo answered with a visitor/login wall: a cookie (WEIBO_COOKIE) would be needed."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cookie needed: {reason} ({url}) / 需要 Cookie（WEIBO_COOKIE）")


class SourceUnavailableError(SourceError):
    """Every endpoint of a fallback chain failed; `failures` says how each one did."""

    def __init__(self, source: str, failures: Sequence[SourceFailure], hint: str = "") -> None:
        self.source = source
        self.failures = list(failures)
        steps = "; ".join(f"{f.url}: {f.error}" for f in self.failures) or "no endpoint configured"
        msg = f"{source}: every endpoint failed / 所有接口均失败 — {steps}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)
