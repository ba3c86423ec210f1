"""Weibo hot search (微博热搜): three endpoints, a fallback chain, ads and pinned topics filtered.

Pure parsers (text or parsed JSON in, `list[HotTopic]` out, no I/O):
- `parse_hot_search(payload, url=...)`: `weibo.com/ajax/side/hotSearch` JSON
  `{"ok":1,"data":{"realtime":[...],"hotgov":{...},"hotgovs":[...]}}`;
- `parse_mobile(payload, url=...)`: `m.weibo.cn/api/container/getIndex` JSON
  (`data.cards[].card_group[]`, entry 0 is the pinned one);
- `parse_summary(html, url=...)`: `s.weibo.com/top/summary` HTML (`#pl_top_realtimehot tbody tr`).
They drop ads (`is_ad`, `ad_info`, `ad_type`, 荐/商 badges, `promotion`, `ads_word`, javascript
links) and pinned official topics (`hotgov(s)`, rows without a rank), keep Weibo's rank, heat,
badge (`flag`: 新/热/沸/爆) and its own category as `label` when present (parent part of
"财经-金融市场"; "暂无" → None). `keep_filtered=True` returns everything, flagged, for inspection.
"Cookie needed" answers (`ok == -100`, a visitor page) raise `CookieNeededError`; a payload
without the expected structure raises `LayoutChangedError`. Text is kept as data, untouched.

Fetching: `await fetch_hot(hot_url=..., mobile_url=..., summary_url=..., cookie=..., fetcher=...)
-> HotList(topics, source_used, errors)` tries the endpoints in that order with the headers
each wants (ajax: browser UA + `Referer: https://weibo.com/`; mobile: mobile UA, `MWeibo-Pwa: 1`,
`X-Requested-With`; summary: browser UA + Referer) and the cookie when set. Redirects are never
followed: a redirect to passport/visitor/login, HTTP 432, `ok == -100` or HTML where JSON was
expected mean "cookie needed" and move to the next endpoint, as do 403, other errors and empty
lists. When all fail it raises `SourceUnavailableError` listing each step (with a WEIBO_COOKIE hint).
`fetch_hot_from_settings(settings, fetcher)` reads WEIBO_HOT_URL, WEIBO_MOBILE_URL,
WEIBO_SUMMARY_URL and WEIBO_COOKIE.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin

from selectolax.lexbor import LexborHTMLParser

from .fetch import RETRY_STATUSES, Fetcher
from .types import (
    CookieNeededError,
    FetchError,
    HotTopic,
    LayoutChangedError,
    SourceError,
    SourceFailure,
    SourceUnavailableError,
)

SOURCE = "weibo"
SEARCH_URL = "https://s.weibo.com/weibo?q="
BROWSER_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/126.0.0.0 Safari/537.36")
MOBILE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
SUMMARY_ROWS = ("#pl_top_realtimehot table tbody tr", "#pl_top_realtimehot tr", "table tbody tr")
AD_BADGES = frozenset({"荐", "商"})
_COOKIE_WALL = ("passport.weibo", "visitor", "login.sina", "/signin", "/login")
_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# a weibo rate-limit/visitor status is not worth a second try within the chain: fail over fast
_WEIBO_RETRY = frozenset(RETRY_STATUSES - {432})


@dataclass
class HotList:
    topics: list[HotTopic]
    source_used: str  # "hot" | "mobile" | "summary"
    errors: list[SourceFailure] = field(default_factory=list)  # endpoints that failed before
    url: str = ""


# ---- helpers ---------------------------------------------------------------------------


def normalise_label(raw: Any) -> str | None:
    """'社会  ' → '社会'; '\\n  暂无\\n' → None; '财经-金融市场' → '财经'."""
    if not isinstance(raw, str):
        return None
    text = re.sub(r"\s+", "", raw)
    text = re.split(r"[-－—|]", text, maxsplit=1)[0] if text else ""
    return None if text in {"", "暂无", "无", "None", "null"} else text


def to_int(value: Any) -> int | None:
    """Heat as int: 938928, '938928', '1,429,608', '综艺 938928', 1.2e6; None when absent."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) < 1e15 else None
    m = _NUM.search(str(value))
    if not m:
        return None
    try:
        n = float(m.group(0).replace(",", ""))
    except ValueError:
        return None
    return int(n) if abs(n) < 1e15 else None


def split_heat(text: str) -> tuple[str | None, int | None]:
    """'综艺 938928' → ('综艺', 938928); ' 1429608' → (None, 1429608)."""
    text = (text or "").strip()
    m = _NUM.search(text)
    prefix = text[: m.start()].strip() if m else text
    return normalise_label(prefix), to_int(text)


def topic_url(word: str, scheme: str | None = None) -> str:
    q = scheme if scheme and scheme.startswith("#") else f"#{word}#"
    return SEARCH_URL + quote(q, safe="")


def _truthy(v: Any) -> bool:
    # "0" and "" are false here: these payloads mix ints, strings and objects
    if isinstance(v, str):
        return v.strip().lower() not in {"", "0", "false", "null", "none"}
    return bool(v)


def _text(v: Any) -> str:
    return v.strip() if isinstance(v, str) else ""


def _looks_html(text: str) -> bool:
    head = text.lstrip()[:200].lower()
    return head.startswith("<") or "<html" in head or "<!doctype" in head


def _load_json(payload: str | bytes | Mapping[str, Any], url: str) -> Mapping[str, Any]:
    if isinstance(payload, Mapping):
        data: Any = payload
    else:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
        try:
            data = json.loads(text)
        except ValueError:
            if _looks_html(text):
                raise CookieNeededError(url, "HTML where JSON was expected (visitor page?)") from None
            raise LayoutChangedError(SOURCE, url, "JSON body", ["json"], "not JSON") from None
    if not isinstance(data, Mapping):
        raise LayoutChangedError(SOURCE, url, "JSON object", ["json"], f"got {type(data).__name__}")
    ok = data.get("ok")
    if ok == -100:
        raise CookieNeededError(url, "ok == -100 (visitor cookie expired or missing)")
    return data


def _ranked(topics: list[HotTopic], own_ranks: list[int | None]) -> list[HotTopic]:
    """Keep Weibo's own ranks when every kept topic has a distinct one, else number 1..n."""
    if (own_ranks and all(r is not None and r >= 1 for r in own_ranks)  # type: ignore[operator]
            and len(set(own_ranks)) == len(own_ranks)):
        return [_with_rank(t, r) for t, r in zip(topics, own_ranks, strict=True)]  # type: ignore[arg-type]
    return [_with_rank(t, i) for i, t in enumerate(topics, 1)]


def _with_rank(t: HotTopic, rank: int) -> HotTopic:
    return HotTopic(rank, t.word, t.heat, t.label, t.url, t.is_ad, t.pinned, t.flag, t.note)


# ---- parsers ---------------------------------------------------------------------------


def parse_hot_search(payload: str | bytes | Mapping[str, Any], *, url: str = "",
                     keep_filtered: bool = False) -> list[HotTopic]:
    """The ajax hotSearch JSON → real topics in Weibo's order."""
    data = _load_json(payload, url)
    inner = data.get("data")
    realtime = inner.get("realtime") if isinstance(inner, Mapping) else None
    if not isinstance(realtime, list):
        raise LayoutChangedError(SOURCE, url, "data.realtime", ["data.realtime"], f"ok={data.get('ok')!r}")

    kept: list[HotTopic] = []
    own: list[int | None] = []
    dropped: list[HotTopic] = []
    if keep_filtered and isinstance(inner, Mapping):
        govs = [inner.get("hotgov"), *(inner.get("hotgovs") or [] if isinstance(inner.get("hotgovs"), list) else [])]
        for g in govs:
            if isinstance(g, Mapping):
                word = (_text(g.get("word")) or _text(g.get("name"))).strip("#").strip() or _text(g.get("note"))
                if word:
                    dropped.append(HotTopic(0, word, to_int(g.get("num")), None,
                                            _text(g.get("url")) or topic_url(word), pinned=True))
    for item in realtime:
        if not isinstance(item, Mapping):
            continue
        scheme = _text(item.get("word_scheme"))
        word = _text(item.get("word")) or _text(item.get("note")) or scheme.strip("#")
        if not word:
            continue
        flag = next((_text(item.get(k)) for k in ("label_name", "icon_desc", "small_icon_desc")
                     if _text(item.get(k))), None)
        is_ad = any(_truthy(item.get(k)) for k in ("is_ad", "ad_info", "ad_type", "promotion")) \
            or any(_text(item.get(k)) in AD_BADGES
                                                  for k in ("label_name", "icon_desc", "small_icon_desc"))
        label = next((normalise_label(item.get(k)) for k in ("category", "subject_label", "flag_desc")
                      if normalise_label(item.get(k))), None)
        heat = to_int(item.get("num"))
        if heat is None:
            heat = to_int(item.get("raw_hot"))
        rank = item.get("rank")
        topic = HotTopic(0, word, heat, label, topic_url(word, scheme), is_ad=is_ad,
                         flag=flag, note=_text(item.get("note")))
        if is_ad:
            dropped.append(topic)
            continue
        kept.append(topic)
        own.append(rank + 1 if isinstance(rank, int) and not isinstance(rank, bool) and rank >= 0 else None)
    out = _ranked(kept, own)
    return out + dropped if keep_filtered else out


def parse_mobile(payload: str | bytes | Mapping[str, Any], *, url: str = "",
                 keep_filtered: bool = False) -> list[HotTopic]:
    """m.weibo.cn container JSON → real topics (entry 0 of the group is pinned)."""
    data = _load_json(payload, url)
    inner = data.get("data")
    cards = inner.get("cards") if isinstance(inner, Mapping) else None
    group = None
    if isinstance(cards, list):
        group = next((c["card_group"] for c in cards
                      if isinstance(c, Mapping) and isinstance(c.get("card_group"), list)), None)
    if group is None:
        if data.get("ok") not in (1, None):
            raise SourceError(f"weibo mobile: ok={data.get('ok')!r} {_text(data.get('msg'))} ({url})")
        raise LayoutChangedError(SOURCE, url, "card_group", ["data.cards[].card_group"])
    kept: list[HotTopic] = []
    dropped: list[HotTopic] = []
    for i, item in enumerate(group):
        if not isinstance(item, Mapping):
            continue
        word = _text(item.get("desc"))
        if not word:
            continue
        pic = _text(item.get("pic"))
        actionlog = item.get("actionlog")
        ext = _text(actionlog.get("ext")) if isinstance(actionlog, Mapping) else ""
        is_ad = _truthy(item.get("promotion")) or "ads_word" in ext or pic.endswith("search_point_orange.png") \
            or _text(item.get("icon_desc")) in AD_BADGES
        pinned = i == 0 or "stick" in pic or "stick:1" in ext
        is_ad = is_ad and not pinned
        extr = item.get("desc_extr")
        label, heat = split_heat(extr) if isinstance(extr, str) else (None, to_int(extr))
        scheme = _text(item.get("scheme"))
        topic = HotTopic(0, word, heat, label,
                         scheme if scheme.startswith(("http://", "https://")) else topic_url(word),
                         is_ad=is_ad, pinned=pinned, flag=_text(item.get("icon_desc")) or None)
        (dropped if is_ad or pinned else kept).append(topic)
    out = _ranked(kept, [])
    return out + dropped if keep_filtered else out


def parse_summary(html: str, *, url: str = "", keep_filtered: bool = False) -> list[HotTopic]:
    """s.weibo.com/top/summary HTML → real topics (rows with a numeric rank and a real link)."""
    html = html or ""
    tree = LexborHTMLParser(html)
    rows = []
    for sel in SUMMARY_ROWS:
        rows = [r for r in tree.css(sel) if r.css_first("td.td-02")]
        if rows:
            break
    if not rows:
        if "passport.weibo" in html or "Sina Visitor System" in html or "visitor" in html[:2000].lower():
            raise CookieNeededError(url, "visitor page instead of the hot list")
        raise LayoutChangedError(SOURCE, url, "hot-search rows", SUMMARY_ROWS)
    kept: list[HotTopic] = []
    own: list[int | None] = []
    dropped: list[HotTopic] = []
    for row in rows:
        a = row.css_first("td.td-02 a")
        if a is None:
            continue
        word = re.sub(r"\s+", " ", a.text(deep=True)).strip()
        if not word:
            continue
        href = (a.attributes.get("href") or "").strip()
        rank_node = row.css_first("td.td-01")
        rank_text = rank_node.text(deep=True).strip() if rank_node else ""
        span = row.css_first("td.td-02 span")
        label, heat = split_heat(span.text(deep=True)) if span else (None, None)
        flag_node = row.css_first("td.td-03")
        flag = flag_node.text(deep=True).strip() if flag_node else ""
        is_ad = not href or "javascript:" in href.lower() or flag in AD_BADGES
        pinned = not (rank_text.isascii() and rank_text.isdigit()) and not is_ad
        link = urljoin("https://s.weibo.com/", href) if href and not is_ad else topic_url(word)
        topic = HotTopic(0, word, heat, label, link, is_ad=is_ad, pinned=pinned, flag=flag or None)
        if is_ad or pinned:
            dropped.append(topic)
        else:
            kept.append(topic)
            own.append(int(rank_text))
    out = _ranked(kept, own)
    return out + dropped if keep_filtered else out


# ---- fetching --------------------------------------------------------------------------


def cookie_header(cookie: str | None) -> str | None:
    """WEIBO_COOKIE as a Cookie header: 'SUB=...; SUBP=...' as is, a bare value as 'SUB=<value>'."""
    if not cookie:
        return None
    value = re.sub(r"[\r\n]", "", cookie).strip()
    if not value:
        return None
    return value if "=" in value else f"SUB={value}"


def headers_for(step: str, cookie: str | None) -> dict[str, str]:
    if step == "hot":
        h = {"User-Agent": BROWSER_UA, "Referer": "https://weibo.com/",
             "Accept": "application/json, text/plain, */*", "X-Requested-With": "XMLHttpRequest"}
    elif step == "mobile":
        h = {"User-Agent": MOBILE_UA, "Referer": "https://s.weibo.com/top/summary?cate=realtimehot",
             "Accept": "application/json, text/plain, */*", "MWeibo-Pwa": "1",
             "X-Requested-With": "XMLHttpRequest"}
    else:
        h = {"User-Agent": BROWSER_UA, "Referer": "https://s.weibo.com/top/summary?cate=realtimehot",
             "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    c = cookie_header(cookie)
    if c:
        h["Cookie"] = c
    return h


Parser = Callable[..., list[HotTopic]]
_STEPS: tuple[tuple[str, Parser, bool], ...] = (
    ("hot", parse_hot_search, True),
    ("mobile", parse_mobile, True),
    ("summary", parse_summary, False),
)


async def _try(step: str, url: str, parser: Parser, expects_json: bool, cookie: str | None,
               fetcher: Fetcher) -> list[HotTopic]:
    page = await fetcher.get(url, headers=headers_for(step, cookie), follow_redirects=False,
                             raise_for_status=False, retry_statuses=_WEIBO_RETRY, retries=1)
    if 300 <= page.status < 400:
        loc = page.location
        if any(w in loc.lower() for w in _COOKIE_WALL):
            raise CookieNeededError(url, f"redirect to {loc[:120]}")
        raise FetchError(url, page.status, f"unexpected redirect to {loc[:120] or '?'}")
    if page.status == 432:
        raise CookieNeededError(url, "HTTP 432")
    if page.status >= 400:
        raise FetchError(url, page.status, page.text[:80].strip() or "error")
    text = page.text
    if expects_json and _looks_html(text):  # by the body: some servers mislabel JSON as text/html
        raise CookieNeededError(url, "HTML where JSON was expected (visitor page?)")
    topics = parser(text, url=url)
    if not topics:
        raise SourceError(f"weibo {step}: empty hot list ({url})")
    return topics


async def fetch_hot(*, hot_url: str | None, mobile_url: str | None = None, summary_url: str | None = None,
                    cookie: str | None = None, fetcher: Fetcher) -> HotList:
    """The hot list from the first endpoint that works, in the order hot → mobile → summary."""
    urls = {"hot": hot_url, "mobile": mobile_url, "summary": summary_url}
    errors: list[SourceFailure] = []
    for step, parser, expects_json in _STEPS:
        url = urls[step]
        if not url:
            continue
        try:
            topics = await _try(step, url, parser, expects_json, cookie, fetcher)
        except SourceError as e:
            errors.append(SourceFailure.of(f"{SOURCE}:{step}", url, e))
            continue
        return HotList(topics, step, errors, url)
    hint = ""
    if any("cookie needed" in f.error for f in errors) and not cookie_header(cookie):
        hint = "Set WEIBO_COOKIE (e.g. SUB=...) / 请设置 WEIBO_COOKIE（如 SUB=...）"
    raise SourceUnavailableError(SOURCE, errors, hint)


async def fetch_hot_from_settings(settings: Any, fetcher: Fetcher) -> HotList:
    return await fetch_hot(hot_url=settings.weibo_hot_url, mobile_url=settings.weibo_mobile_url,
                           summary_url=settings.weibo_summary_url, cookie=settings.weibo_cookie,
                           fetcher=fetcher)
