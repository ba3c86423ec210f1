"""The daily digest: today's People's Daily summarised and the Weibo hot search classified.

`await build_digest(app, day, provider=None, progress=None) -> Digest` fetches the sources
for `day` (People's Daily; RSS (`NEWS_RSS_URLS`) when the paper fails entirely; the Weibo hot
list only when `day` is today in `STUDYBOT_TZ`: it is live), summarises each article (offline
extractive, or the LLM path of `jobs.summarize` with its validator), writes a day overview and
classifies the hot topics (`jobs.classify`). A source that fails does not stop the digest: the
failure is listed in `errors` ({source, url, error}) and `notes` say what is missing.

Every text field comes from the web or a model and is untrusted: `sanitize()` strips control
characters, passes it through `bot.render.scrub` (mentions, invites, masked links, floods) and
bounds its length (summaries at most 200 characters). The JSON shape is DESIGN §3.

Exactly once: `post_digest(app, day, targets, send)` claims `("digest", date, channel)` in the
store before calling `send(channel, digest)` and marks it sent after; a failed send releases
the claim so a later run may try again. Digests are kept per date in the `digests` table.

`render_terminal(digest)` is the plain-text block for the terminal; the Discord embed is built
by the Discord adapter from the same `Digest`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.render import scrub

if TYPE_CHECKING:
    from bot.app import App
    from bot.store import Store
    from jobs.classify import Classifier
    from jobs.sources.fetch import Fetcher
    from jobs.sources.types import Article, HotTopic
    from providers.router import Router

log = logging.getLogger(__name__)

# length bounds of the output fields (characters, after scrubbing)
SUMMARY_MAX = 200
OVERVIEW_MAX = 400
TITLE_MAX = 120
WORD_MAX = 60
PAGE_MAX = 40
LABEL_MAX = 20
URL_MAX = 500
ERROR_MAX = 300
NOTE_MAX = 300
OVERVIEW_LLM_ITEMS = 40  # articles fed to the LLM overview (paper order: front pages first)
RSS_WINDOW = timedelta(hours=24)

Progress = Callable[[str, int, int], None]  # (stage, done, total), like bot.app.stderr_progress
Send = Callable[[str, "Digest"], Awaitable[Any]]  # (channel id, digest): the Discord adapter's poster


# ---- the digest ------------------------------------------------------------------------------

@dataclass
class Digest:
    date: str  # YYYY-MM-DD
    overview: str = ""
    news: list[dict[str, Any]] = field(default_factory=list)  # {title, url, page, summary}
    hot_topics: list[dict[str, Any]] = field(default_factory=list)  # {rank, word, heat, label, sublabel, ...}
    errors: list[dict[str, str]] = field(default_factory=list)  # {source, url, error}
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str | None] = field(default_factory=dict)  # {"news": "people_daily"|"rss"|None, "hot": ...}
    built_at: str = ""  # ISO time, UTC

    @property
    def ok(self) -> bool:
        """Whether there is anything to post."""
        return bool(self.news or self.hot_topics)

    def as_dict(self) -> dict[str, Any]:
        return {"date": self.date, "overview": self.overview, "news": [dict(n) for n in self.news],
                "hot_topics": [dict(t) for t in self.hot_topics], "errors": [dict(e) for e in self.errors],
                "notes": list(self.notes), "sources": dict(self.sources), "built_at": self.built_at}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Digest:
        """From stored JSON; sanitised again (the bounds may have changed since it was stored)."""
        return sanitize(cls(
            date=str(d.get("date") or ""), overview=str(d.get("overview") or ""),
            news=[dict(n) for n in d.get("news") or [] if isinstance(n, Mapping)],
            hot_topics=[dict(t) for t in d.get("hot_topics") or [] if isinstance(t, Mapping)],
            errors=[dict(e) for e in d.get("errors") or [] if isinstance(e, Mapping)],
            notes=[str(n) for n in d.get("notes") or []],
            sources={str(k): (str(v) if v is not None else None) for k, v in (d.get("sources") or {}).items()},
            built_at=str(d.get("built_at") or ""),
        ))


# ---- untrusted text ----------------------------------------------------------------------------

# C0/C1 controls (terminal escapes), bidi overrides and zero-width joiners that could hide text;
# the ZWSP that scrub() inserts to defuse mentions is added after this step.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200c-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_SPACES = re.compile(r"\s+")


def safe_text(value: Any, limit: int, *, oneline: bool = True) -> str:
    """Untrusted text made safe to show: no control characters, scrubbed, at most `limit` chars."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFC", str(value))
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _SPACES.sub(" ", text) if oneline else re.sub(r"[ \t\u3000]+", " ", text)
    text = scrub(text.strip())
    return bound(text, limit)


def bound(text: str, limit: int) -> str:
    """At most `limit` characters; a cut is marked with an ellipsis (cutting never forms a mention)."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    return text[: limit - 1].rstrip() + "…"


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v == v and abs(v) < 1e15:
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    return None


def sanitize(d: Digest) -> Digest:
    """Every text field scrubbed and bounded (idempotent)."""
    d.date = safe_text(d.date, 10)
    d.overview = safe_text(d.overview, OVERVIEW_MAX)
    d.news = [{
        "title": safe_text(n.get("title"), TITLE_MAX),
        "url": safe_text(n.get("url"), URL_MAX),
        "page": safe_text(n.get("page"), PAGE_MAX),
        "summary": safe_text(n.get("summary"), SUMMARY_MAX),
        "summary_method": safe_text(n.get("summary_method"), 20) or None,
    } for n in d.news]
    d.hot_topics = [{
        "rank": _int(t.get("rank")),
        "word": safe_text(t.get("word"), WORD_MAX),
        "heat": _int(t.get("heat")),
        "label": safe_text(t.get("label"), LABEL_MAX),
        "sublabel": safe_text(t.get("sublabel"), LABEL_MAX) or None,
        "label_method": safe_text(t.get("label_method"), 20) or None,
        "url": safe_text(t.get("url"), URL_MAX),
        "weibo_label": safe_text(t.get("weibo_label"), LABEL_MAX) or None,
        "flag": safe_text(t.get("flag"), 4) or None,
    } for t in d.hot_topics]
    d.errors = [{"source": safe_text(e.get("source"), 40), "url": safe_text(e.get("url"), URL_MAX),
                 "error": safe_text(e.get("error"), ERROR_MAX)} for e in d.errors]
    d.notes = [n for n in (safe_text(x, NOTE_MAX) for x in d.notes) if n]
    d.sources = {safe_text(k, 20): (safe_text(v, 40) or None) for k, v in d.sources.items()}
    return d


# ---- sources -----------------------------------------------------------------------------------

@dataclass
class _News:
    articles: list[Article] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str | None = None


@dataclass
class _Hot:
    topics: list[HotTopic] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str | None = None


def _failure(source: str, url: str, exc: BaseException) -> dict[str, str]:
    return {"source": source, "url": str(getattr(exc, "url", "") or url), "error": str(exc) or type(exc).__name__}


async def _fetch_news(settings: Any, day: date, fetcher: Fetcher, now: datetime,
                      progress: Progress | None) -> _News:
    from jobs.sources.people_daily import SOURCE, fetch_day, layout_url

    out = _News()
    first = layout_url(settings.people_daily_base_url, day, 1)
    cb = (lambda done, total: progress("人民日报 / People's Daily", done, total)) if progress else None
    try:
        paper = await fetch_day(day, base_url=settings.people_daily_base_url, fetcher=fetcher, progress=cb)
    except Exception as e:  # SourceError, or anything unforeseen: the digest goes on without the paper
        if not isinstance(e, _source_errors()):
            log.exception("People's Daily fetch failed unexpectedly")
        out.errors.append(_failure(SOURCE, first, e))
        out.notes.append("人民日报获取失败 / People's Daily could not be fetched")
    else:
        out.articles = list(paper.articles)
        out.errors += [f.as_dict() for f in paper.errors]
        if paper.errors:
            out.notes.append(f"人民日报有 {len(paper.errors)} 个页面或文章获取失败，见 errors / "
                             f"{len(paper.errors)} People's Daily pages or articles failed (see errors)")
        if out.articles:
            out.source = SOURCE
            return out
        out.notes.append("人民日报当天没有可读的文章 / no readable People's Daily article for the day")
    # the paper failed entirely: RSS is the fallback for news
    urls = settings.rss_urls
    if not urls:
        out.notes.append("未配置 NEWS_RSS_URLS，没有备用新闻源 / no RSS fallback configured (NEWS_RSS_URLS)")
        return out
    from jobs.sources.rss import fetch_rss

    tz = now.tzinfo or UTC
    end_of_day = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    ref = min(now, end_of_day)
    try:
        rss = await fetch_rss(urls, fetcher, ref, max_age=RSS_WINDOW)
    except Exception as e:
        log.exception("RSS fetch failed unexpectedly")
        out.errors.append(_failure("rss", ",".join(urls), e))
        return out
    out.errors += [f.as_dict() for f in rss.errors]
    out.articles = list(rss.articles)
    if out.articles:
        out.source = "rss"
        out.notes.append(f"新闻改用 RSS（{len(out.articles)} 条）/ news taken from RSS feeds instead "
                         f"({len(out.articles)} items)")
    else:
        out.notes.append("RSS 也没有这一天的新闻 / the RSS feeds had no news for the day either")
    return out


async def _fetch_hot(settings: Any, fetcher: Fetcher) -> _Hot:
    from jobs.sources.types import SourceUnavailableError
    from jobs.sources.weibo import fetch_hot_from_settings

    out = _Hot()
    try:
        hot = await fetch_hot_from_settings(settings, fetcher)
    except SourceUnavailableError as e:
        out.errors += [f.as_dict() for f in e.failures] or [_failure("weibo", "", e)]
        out.notes.append("微博热搜获取失败，本期没有热搜 / the Weibo hot search could not be fetched")
        return out
    except Exception as e:
        log.exception("Weibo fetch failed unexpectedly")
        out.errors.append(_failure("weibo", settings.weibo_hot_url or "", e))
        out.notes.append("微博热搜获取失败，本期没有热搜 / the Weibo hot search could not be fetched")
        return out
    out.topics = sorted(hot.topics, key=lambda t: t.rank)
    out.source = hot.source_used
    if hot.errors:  # nothing is missing, but say that the main endpoint failed
        failed = ", ".join(f"{f.source}: {f.error}" for f in hot.errors)
        out.notes.append(f"微博热搜改用备用接口 {hot.source_used} / Weibo hot search from the fallback "
                         f"endpoint {hot.source_used} ({failed})")
    return out


def _source_errors() -> tuple[type[BaseException], ...]:
    from jobs.sources.types import SourceError

    return (SourceError,)


# ---- summaries, overview, labels -----------------------------------------------------------------

def _llm_router_usable(router: Router | None, provider: str | None) -> bool:
    if router is None or provider == "offline":
        return False
    from jobs.summarize import llm_usable

    return llm_usable(router, provider)


async def _summaries(articles: Sequence[Article], provider: str | None, router: Router | None
                     ) -> list[tuple[str, str]]:
    """(summary, method) per article; method "llm" or "extractive"."""
    from jobs.summarize import summarize, summarize_rows

    if _llm_router_usable(router, provider):
        rows = [{"title": a.title, "text": a.text} for a in articles]
        done = await summarize_rows(rows, provider, SUMMARY_MAX, router=router)
        return [(str(r.get("summary") or ""), str(r.get("summary_method") or "")) for r in done]

    def offline() -> list[tuple[str, str]]:
        return [(summarize(a.text, SUMMARY_MAX, title=a.title), "extractive") for a in articles]

    # CPU work off the event loop: the Discord adapter shares it
    return await asyncio.to_thread(offline)


async def _overview(news: Sequence[Mapping[str, Any]], provider: str | None, router: Router | None) -> str:
    from jobs.summarize import overview, summarize_llm_detail

    if not news:
        return ""
    if _llm_router_usable(router, provider):
        # the day in the model's words, checked by the summary validator against the summaries themselves
        joined = "\n".join(f"{n['title']}：{n['summary']}" for n in news[:OVERVIEW_LLM_ITEMS])
        text, method = await summarize_llm_detail(router, joined, 300, title="今日要闻", provider=provider)
        if method == "llm" and text:
            return text
    items = [{"title": n["title"], "summary": n["summary"], "page": n["page"]} for n in news]
    return await asyncio.to_thread(overview, items, 300)


# Weibo's own category (parent part), when present, is an editor's label: where it maps onto
# prompts/labels.yaml it overrides the classifier, unless the classifier chose a finer label
# that the category allows (财经 → 股票 or 房产 stays). Value: (label, sublabel, also allowed).
_SOCIAL = frozenset({"国际", "教育", "农业", "军事", "文化"})  # Weibo has no 国际: 社会/时事 absorb it
WEIBO_LABELS: dict[str, tuple[str, str | None, frozenset[str]]] = {
    "社会": ("社会/民生", None, _SOCIAL), "时事": ("社会/民生", None, _SOCIAL),
    "社会新闻": ("社会/民生", None, _SOCIAL), "体育": ("体育", None, frozenset()),
    "明星": ("娱乐", "明星", frozenset()), "综艺": ("娱乐", "综艺", frozenset()),
    "电视剧": ("娱乐", "影视", frozenset()), "剧集": ("娱乐", "影视", frozenset()),
    "电影": ("娱乐", "影视", frozenset()), "音乐": ("娱乐", "音乐", frozenset()),
    "盛典": ("娱乐", "盛典晚会", frozenset()), "晚会": ("娱乐", "盛典晚会", frozenset()),
    "财经": ("财经", None, frozenset({"股票", "房产", "汽车"})), "科技": ("科技", None, frozenset({"汽车", "游戏"})),
    "互联网": ("科技", "互联网", frozenset()), "数码": ("科技", "数码", frozenset()),
    "军事": ("军事", None, frozenset()), "游戏": ("游戏", None, frozenset()), "汽车": ("汽车", None, frozenset()),
    "教育": ("教育", None, frozenset()), "旅游": ("旅游", None, frozenset()), "房产": ("房产", None, frozenset()),
    "历史": ("文化", "历史", frozenset()),
}


def _merge_weibo_label(weibo_label: str | None, result: Mapping[str, Any]) -> dict[str, Any]:
    from jobs.classify import load_labels

    out = {"label": result.get("label"), "sublabel": result.get("sublabel"),
           "label_method": result.get("method") or "classifier"}
    mapped = WEIBO_LABELS.get((weibo_label or "").strip())
    labels = load_labels()
    if not mapped or mapped[0] not in labels.names or out["label"] in mapped[2]:
        return out
    label, sub, _ = mapped
    keep = out["sublabel"] if out["label"] == label else None
    out.update(label=label, sublabel=keep or (sub if sub in labels.sublabel_names(label) else None),
               label_method="weibo")
    return out


async def _labels(topics: Sequence[HotTopic], provider: str | None, router: Router | None,
                  classifier: Classifier | None, settings: Any) -> list[dict[str, Any]]:
    from jobs.classify import classify_rows, get_classifier, load_labels

    if not topics:
        return []
    clf = classifier or get_classifier(settings.data_path, settings.embedding_model)
    words = [t.word for t in topics]

    async def batch(ws: list[str]) -> list[dict[str, Any]]:
        if _llm_router_usable(router, provider):
            return await classify_rows([{"word": w} for w in ws], provider, router=router, classifier=clf)
        results = await asyncio.to_thread(clf.classify, ws, topics=True)
        return [r.as_dict() for r in results]

    try:
        return await batch(words)
    except Exception:  # one hostile topic must not cost the whole list its labels
        log.exception("classifying the hot topics failed; classifying them one by one")
    out = []
    for w in words:
        try:
            out.append((await batch([w]))[0])
        except Exception:
            log.warning("could not classify hot topic %r", w[:40])
            out.append({"label": load_labels().names[0], "sublabel": None, "method": "unclassified"})
    return out


# ---- building ----------------------------------------------------------------------------------

def today_in(tz: Any, now: datetime | None = None) -> date:
    return (now or datetime.now(tz)).astimezone(tz).date()


async def build_digest(app: App, day: date, provider: str | None = None, progress: Progress | None = None, *,
                       now: datetime | None = None, fetcher: Fetcher | None = None,
                       classifier: Classifier | None = None) -> Digest:
    """The digest for `day` (see the module docstring). `now` (aware) decides what "today" is;
    `fetcher` and `classifier` may be injected (benchmarks count requests, tests share prototypes)."""
    from jobs.sources.fetch import Fetcher

    settings = app.settings
    tz = settings.zone
    now = (now or datetime.now(tz)).astimezone(tz)
    today = now.date()
    started = time.perf_counter()
    digest = Digest(date=day.isoformat(), built_at=datetime.now(UTC).isoformat(timespec="seconds"))

    own = fetcher is None
    f = fetcher or Fetcher.from_settings(settings)
    try:
        news_job = _fetch_news(settings, day, f, now, progress)
        if day == today:
            news, hot = await asyncio.gather(news_job, _fetch_hot(settings, f))
        else:
            news, hot = await news_job, _Hot()
            when = "过去的日期" if day < today else "未来的日期"
            hot.notes.append(f"微博热搜是实时榜单，{when}不提供 / the hot-search list is live: "
                             f"omitted for {'a past' if day < today else 'a future'} date")
    finally:
        if own:
            await f.aclose()

    router: Router | None = None
    if provider != "offline":
        router = await (app.ensure_provider(provider) if provider else app.router())

    summaries = await _summaries(news.articles, provider, router)
    for a, (s, method) in zip(news.articles, summaries, strict=True):
        summary = safe_text(s, SUMMARY_MAX)
        if not summary:  # nothing summarisable (a bare photo, an RSS item with no body): the title says it
            summary, method = safe_text(a.title, SUMMARY_MAX), "title"
        digest.news.append({"title": a.title, "url": a.url, "page": a.page, "summary": summary,
                            "summary_method": method})
    sanitize(digest)  # the overview reads scrubbed summaries
    if progress and news.articles:
        progress("摘要 / summaries", len(news.articles), len(news.articles))

    digest.overview = await _overview(digest.news, provider, router)

    labels = await _labels(hot.topics, provider, router, classifier, settings)
    for t, lab in zip(hot.topics, labels, strict=True):
        digest.hot_topics.append({"rank": t.rank, "word": t.word, "heat": t.heat, **_merge_weibo_label(t.label, lab),
                                  "url": t.url, "weibo_label": t.label, "flag": t.flag})

    digest.errors = news.errors + hot.errors
    digest.notes = news.notes + hot.notes
    if not digest.ok:
        digest.notes.append("本期简报没有任何内容 / this digest has no content at all")
    digest.sources = {"news": news.source, "hot": hot.source}
    log.info("digest %s built in %.1f s: %d news, %d topics, %d errors", digest.date,
             time.perf_counter() - started, len(digest.news), len(digest.hot_topics), len(digest.errors))
    return sanitize(digest)


# ---- storage -----------------------------------------------------------------------------------

async def save_digest(store: Store, digest: Digest) -> None:
    """Keep the digest of its date (replacing an earlier build of the same date)."""
    from sqlalchemy import delete, insert

    from bot.store import digests

    async with store.engine.begin() as conn:
        await conn.execute(delete(digests).where(digests.c.date == digest.date))
        await conn.execute(insert(digests).values(date=digest.date, payload=digest.to_json(),
                                                  created_at=store.clock()))


async def load_digest(store: Store, day: date) -> Digest | None:
    from sqlalchemy import select

    from bot.store import digests

    async with store.engine.connect() as conn:
        payload = (await conn.execute(select(digests.c.payload).where(digests.c.date == day.isoformat()))).scalar()
    if payload is None:
        return None
    try:
        return Digest.from_dict(json.loads(payload))
    except (ValueError, TypeError):
        log.warning("stored digest for %s is unreadable; rebuilding", day)
        return None


async def get_or_build(app: App, day: date, provider: str | None = None, *, now: datetime | None = None,
                       **kw: Any) -> Digest:
    """The stored digest of `day` when it is complete; otherwise a fresh build, stored."""
    store = await app.store()
    stored = await load_digest(store, day)
    if stored is not None and stored.ok and not stored.errors:
        return stored
    digest = await build_digest(app, day, provider, now=now, **kw)
    if digest.ok or stored is None:
        await save_digest(store, digest)
    elif stored.ok:  # a worse rebuild never replaces a usable digest
        return stored
    return digest


# ---- posting exactly once ----------------------------------------------------------------------

@dataclass(frozen=True)
class PostResult:
    target: str
    status: str  # sent | already | failed | empty
    error: str = ""


async def post_digest(app: App, day: date, targets: Iterable[str | int], send: Send, *,
                      provider: str | None = None, now: datetime | None = None,
                      digest: Digest | None = None) -> list[PostResult]:
    """Post the digest of `day` to each target channel at most once.

    The store's unique key ("digest", date, channel) is written before `send` and marked sent
    after; a second run (a restart, another process) finds the key and skips. A send that raises
    releases the key so a later run retries. An empty digest is not posted (nothing is claimed).
    """
    store = await app.store()
    key = day.isoformat()
    channels = list(dict.fromkeys(str(t) for t in targets))
    results: dict[str, PostResult] = {}
    pending = []
    for ch in channels:
        if await store.delivered("digest", key, ch):
            results[ch] = PostResult(ch, "already")
        else:
            pending.append(ch)
    if pending and digest is None:
        digest = await get_or_build(app, day, provider, now=now)
    for ch in pending:
        assert digest is not None
        if not digest.ok:
            results[ch] = PostResult(ch, "empty", "; ".join(digest.notes)[:ERROR_MAX])
            continue
        if not await store.claim("digest", key, ch):
            results[ch] = PostResult(ch, "already")
            continue
        try:
            await send(ch, digest)
        except Exception as e:  # the adapter's error: release the claim, a later run retries
            log.warning("posting the %s digest to %s failed: %s", key, ch, e)
            await store.finish_delivery("digest", key, ch, ok=False)
            results[ch] = PostResult(ch, "failed", f"{type(e).__name__}: {e}"[:ERROR_MAX])
        else:
            await store.finish_delivery("digest", key, ch, ok=True)
            results[ch] = PostResult(ch, "sent")
    return [results[ch] for ch in channels]


# ---- terminal rendering ------------------------------------------------------------------------

def _heat(heat: Any) -> str:
    if not isinstance(heat, int):
        return ""
    return f"{heat / 10000:.1f}万" if heat >= 10000 else str(heat)


def _grouped(items: Iterable[dict[str, Any]], key: str) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        groups.setdefault(str(it.get(key) or "其他 / other"), []).append(it)
    return list(groups.items())


def render_terminal(digest: Digest) -> str:
    """A readable block: date, overview, news by page, hot topics by label, then errors and notes."""
    d = Digest.from_dict(digest.as_dict())  # sanitised again: never trust a Digest built elsewhere
    lines = [f"━━ 每日简报 / Daily digest · {d.date} ━━", ""]
    if d.overview:
        lines += ["【概览 / Overview】", d.overview, ""]
    lines.append(f"【人民日报 / News】{len(d.news)} 篇" if d.news else "【人民日报 / News】无 / none")
    for page, items in _grouped(d.news, "page"):
        lines.append(f"  ▌{page}")
        for n in items:
            lines.append(f"    • {n['title']}")
            if n["summary"] and n["summary"] != n["title"]:
                lines.append(f"      {n['summary']}")
            if n["url"]:
                lines.append(f"      {n['url']}")
    lines.append("")
    if d.hot_topics:
        lines.append(f"【微博热搜 / Weibo hot search】{len(d.hot_topics)} 条")
        groups = _grouped(sorted(d.hot_topics, key=lambda t: t["rank"] or 10**6), "label")
        for label, items in groups:
            lines.append(f"  ▌{label}")
            for t in items:
                extra = "".join(f" · {x}" for x in (t.get("sublabel"),) if x)
                heat = _heat(t["heat"])
                lines.append(f"    {t['rank'] or '-':>2}. {t['word']}" + (f"  热度 {heat}" if heat else "") + extra)
        lines.append("")
    if d.errors:
        lines.append(f"【错误 / Errors】{len(d.errors)}")
        lines += [f"  - [{e['source']}] {e['url']}: {e['error']}" for e in d.errors]
        lines.append("")
    if d.notes:
        lines.append("【说明 / Notes】")
        lines += [f"  - {n}" for n in d.notes]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
