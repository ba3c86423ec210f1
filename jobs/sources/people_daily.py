"""People's Daily (人民日报) digital edition: every page and article of a day.

Two URL eras, chosen by date (`era_for`):

- "html" up to 2024-11-30: layout `/rmrb/html/YYYY-MM/DD/nbs.D110000renmrb_PP.htm`,
  articles `/rmrb/html/YYYY-MM/DD/nw.D110000renmrb_YYYYMMDD_N-PP.htm`;
- "pc" from 2024-12-01: layout `/rmrb/pc/layout/YYYYMM/DD/node_PP.html`,
  articles `/rmrb/pc/content/YYYYMM/DD/content_<id>.html` (a site-wide serial: never guessed,
  always read from the layout pages).

`base_url` is scheme and host (`PEOPLE_DAILY_BASE_URL`, default `http://paper.people.com.cn`);
the paths above are appended, so tests point it at a loopback server.

Pure parsers (no I/O):
- `parse_layout(html, url) -> LayoutPage(name, number, pages, articles, pdf_url, date)`;
  `pages` is `[PageLink(name, url, is_ad)]` (广告 pages flagged), `articles` is
  `[ArticleLink(title, url)]` without editor rows (责编/责任编辑). Photo rows (图片报道) are kept:
  their captions are the article.
- `parse_article(html, url) -> Article(kicker, title, subtitle, byline, paragraphs, url, page ...)`:
  h3/h1/h2 of `.article`, `p.sec` byline without its date span, `#ozoom p` paragraphs with empty
  paragraphs, editor lines and "30168632http://..." residue removed.
Each field has an ordered list of selectors; when none finds anything the parser raises
`LayoutChangedError(source, url, field, tried)`.

Fetching: `await fetch_day(day, base_url=..., fetcher=..., progress=None) -> PaperDay(articles, errors)`
reads page 01, then the other non-ad pages, then every article with bounded concurrency (the
fetcher adds the per-host gap and cap). An article or page that fails is reported in `errors`
as `SourceFailure(source, url, error)`; only a failing first page, or a day where every article
failed to parse, raises. `progress(done, total)` is called after each article.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal, NamedTuple
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from .fetch import Fetcher
from .types import Article, LayoutChangedError, SourceFailure

SOURCE = "people_daily"
PC_ERA_START = date(2024, 12, 1)
Era = Literal["html", "pc"]

PAGE_SELECTORS = (
    ".swiper-box .swiper-container .swiper-slide > a",
    ".swiper-slide a",
    "#pageList ul div.right_title-name a",
    "#list li a",
    "a[href*='node_']",
    "a[href*='nbs.D110000renmrb']",
)
ARTICLE_SELECTORS = (
    ".news .news-list li a",
    ".news-list li a",
    "#titleList ul li a",
    "a[href*='content_']",
    "a[href*='nw.D110000renmrb']",
)
TITLE_SELECTORS = (".article h1", ".article-box h1", "<!--enpproperty <title>-->")
BODY_SELECTORS = ("#ozoom", "#articleContent", ".article .article-content")

_PAGE_HREF = re.compile(r"(?:node_(\d+)\.html?|nbs\.D110000renmrb_(\d+)\.htm)$")
_ARTICLE_HREF = re.compile(r"(?:content_\d+\.html?|nw\.D110000renmrb_\d{8}_\d+-\d+\.htm)$")
_PAGE_TEXT = re.compile(r"第?\s*(\d{1,3})\s*版\s*[:：]?\s*(.*)")
_EDITOR = re.compile(r"^[（(【\[]?\s*(?:本版)?\s*(?:责编|责任编辑)\s*[:：]")
_RESIDUE = re.compile(r"\d{6,}\s*https?://\S*$")  # "30168632http://..." left at paragraph ends
_URL_DATE = re.compile(r"/(?:layout|content|html)/(\d{4})-?(\d{2})/(\d{2})/")
_CN_DATE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_ENP = re.compile(r"<!--\s*enpproperty(.*?)/?enpproperty\s*-->", re.S | re.I)
_WS = re.compile(r"\s+")


class PageLink(NamedTuple):
    name: str  # "01版：要闻"
    url: str
    is_ad: bool


class ArticleLink(NamedTuple):
    title: str
    url: str


@dataclass(frozen=True)
class LayoutPage:
    name: str  # "要闻"
    number: str  # "01"
    pages: list[PageLink]  # every page of the day, as linked from this one
    articles: list[ArticleLink]
    pdf_url: str | None
    date: date | None
    url: str = ""

    @property
    def label(self) -> str:
        return f"{self.number}版：{self.name}" if self.number else self.name


@dataclass
class PaperDay:
    date: date
    era: Era
    articles: list[Article] = field(default_factory=list)
    errors: list[SourceFailure] = field(default_factory=list)
    pages: list[LayoutPage] = field(default_factory=list)  # layout pages read
    ad_pages: list[PageLink] = field(default_factory=list)  # skipped, never fetched
    skipped: list[SourceFailure] = field(default_factory=list)  # e.g. photo-only pages (no text)


# ---- URLs ------------------------------------------------------------------------------


def era_for(day: date) -> Era:
    return "pc" if day >= PC_ERA_START else "html"


def layout_url(base_url: str, day: date, page: int | str = 1) -> str:
    base = base_url.rstrip("/")
    pp = f"{int(page):02d}"
    if era_for(day) == "pc":
        return f"{base}/rmrb/pc/layout/{day:%Y%m}/{day:%d}/node_{pp}.html"
    return f"{base}/rmrb/html/{day:%Y-%m}/{day:%d}/nbs.D110000renmrb_{pp}.htm"


def is_editor_line(text: str) -> bool:
    """A body line such as '（责编：王某）' or '本版责编：王某  版式设计：李某'."""
    return bool(_EDITOR.match(text.strip()))


def is_editor_row(title: str) -> bool:
    """A layout row that names the page's editors rather than an article (RSSHub drops these too)."""
    return "责编" in title or "责任编辑" in title


def is_photo_report(title: str) -> bool:
    return title.strip().startswith("图片报道")


# ---- parsers ---------------------------------------------------------------------------


def _clean(text: str | None) -> str:
    return _WS.sub(" ", (text or "").replace("\u3000", " ").replace("\xa0", " ")).strip()


def _path(url: str) -> str:
    return urlsplit(url).path


def _date_of(url: str, tree: LexborHTMLParser | None = None) -> date | None:
    # The URL path is the reliable date; <meta name=publishdate> is known to be stale.
    m = _URL_DATE.search(_path(url))
    if not m and tree is not None:
        node = tree.css_first(".newstime") or tree.css_first(".date-box")
        m = _CN_DATE.search(node.text() if node else "")
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _split_page_text(text: str, href: str = "") -> tuple[str, str]:
    """'01版：要闻' → ('01', '要闻'); the number falls back to the link."""
    text = _clean(text)
    m = _PAGE_TEXT.match(text)
    if m:
        return f"{int(m.group(1)):02d}", m.group(2).strip()
    hm = _PAGE_HREF.search(_path(href))
    number = f"{int(hm.group(1) or hm.group(2)):02d}" if hm else ""
    return number, text


def _links(tree: LexborHTMLParser, selectors: tuple[str, ...], pattern: re.Pattern[str],
           base: str) -> tuple[list[tuple[str, str]], list[str]]:
    tried: list[str] = []
    for sel in selectors:
        tried.append(sel)
        found = []
        for a in tree.css(sel):
            href = (a.attributes.get("href") or "").strip()
            if href and pattern.search(_path(href)):
                found.append((_clean(a.text(deep=True)), urljoin(base, href)))
        if found:
            return found, tried
    return [], tried


def parse_layout(html: str, url: str) -> LayoutPage:
    """One layout page (版面): the day's page list, this page's articles, PDF and date."""
    tree = LexborHTMLParser(html or "")
    raw_pages, tried_pages = _links(tree, PAGE_SELECTORS, _PAGE_HREF, url)
    if not raw_pages:
        raise LayoutChangedError(SOURCE, url, "pages", tried_pages, "no page links (版面)")
    pages: list[PageLink] = []
    seen: set[str] = set()
    for text, href in raw_pages:
        if href in seen:
            continue
        seen.add(href)
        number, name = _split_page_text(text, href)
        label = f"{number}版：{name}" if number else name
        pages.append(PageLink(label, href, "广告" in name))

    ban = tree.css_first(".paper-bot p.ban") or tree.css_first("p.ban")
    number, name = _split_page_text(ban.text(deep=True) if ban else "", url)
    if not name:  # fall back to this page's entry in the page list
        own = next((p for p in pages if p.url == url), None)
        if own:
            number, name = _split_page_text(own.name, own.url)
    is_ad = "广告" in name

    raw_articles, tried_articles = _links(tree, ARTICLE_SELECTORS, _ARTICLE_HREF, url)
    if not raw_articles and not is_ad:
        raise LayoutChangedError(SOURCE, url, "articles", tried_articles, f"page {number or '?'} {name}")
    articles: list[ArticleLink] = []
    seen = set()
    for title, href in raw_articles:
        if href in seen or is_editor_row(title):
            continue
        seen.add(href)
        articles.append(ArticleLink(title, href))

    pdf = tree.css_first(".paper-bot .btn a") or tree.css_first("a[href$='.pdf']")
    pdf_href = (pdf.attributes.get("href") or "") if pdf else ""
    return LayoutPage(name=name, number=number, pages=pages, articles=articles,
                      pdf_url=urljoin(url, pdf_href) if pdf_href.endswith(".pdf") else None,
                      date=_date_of(url, tree), url=url)


def _enp_fields(html: str) -> dict[str, str]:
    """Title/subtitle/kicker/author from the `<!--enpproperty ...-->` comment, when present."""
    m = _ENP.search(html or "")
    if not m:
        return {}
    out = {}
    for tag in ("title", "subtitle", "introtitle", "author"):
        t = re.search(rf"<{tag}>(.*?)</{tag}>", m.group(1), re.S)
        if t:
            out[tag] = _clean(re.sub(r"<[^>]+>", "", t.group(1)))
    return out


def _first_text(tree: LexborHTMLParser, *selectors: str) -> str:
    for sel in selectors:
        node = tree.css_first(sel)
        if node is not None:
            text = _clean(node.text(deep=True))
            if text:
                return text
    return ""


def _paragraph(text: str) -> str:
    text = _clean(text)
    return _RESIDUE.sub("", text).strip()


def _body(container: LexborNode) -> list[str]:
    nodes = container.css("p")
    raw = [n.text(deep=True) for n in nodes] if nodes else container.text(deep=True, separator="\n").split("\n")
    out = []
    for t in raw:
        t = _paragraph(t)
        if t and not is_editor_line(t):
            out.append(t)
    return out


def _byline(tree: LexborHTMLParser) -> tuple[str, str]:
    """(byline, page number from the '《人民日报》（... 第 NN 版）' date span)."""
    sec = tree.css_first(".article p.sec") or tree.css_first("p.sec")
    if sec is None:
        return "", ""
    date_node = sec.css_first(".date")
    date_text = date_node.text(deep=True) if date_node else ""
    full = sec.text(deep=True)
    byline = _clean(full.replace(date_text, "", 1) if date_text else full)
    m = re.search(r"第\s*(\d{1,3})\s*版", date_text or full)
    byline = re.sub(r"《人民日报》.*$", "", byline).strip()
    return byline, (f"{int(m.group(1)):02d}" if m else "")


def parse_article(html: str, url: str) -> Article:
    """One article page: kicker (h3), title (h1), subtitle (h2), byline, body paragraphs."""
    tree = LexborHTMLParser(html or "")
    enp = _enp_fields(html)
    title = _first_text(tree, *TITLE_SELECTORS[:2]) or enp.get("title", "")
    if not title:
        raise LayoutChangedError(SOURCE, url, "title", TITLE_SELECTORS)
    container = None
    for sel in BODY_SELECTORS:
        container = tree.css_first(sel)
        if container is not None:
            break
    if container is None:
        raise LayoutChangedError(SOURCE, url, "body", BODY_SELECTORS)
    byline, page_no = _byline(tree)
    ban = tree.css_first(".paper-bot p.ban")
    ban_no, page_name = _split_page_text(ban.text(deep=True)) if ban else ("", "")
    page_no = page_no or ban_no
    if not page_no:
        m = re.search(r"-(\d+)\.htm$", _path(url))  # html era: nw...._N-PP.htm
        page_no = f"{int(m.group(1)):02d}" if m else ""
    return Article(
        kicker=_first_text(tree, ".article h3", ".article-box h3") or enp.get("introtitle", ""),
        title=title,
        subtitle=_first_text(tree, ".article h2", ".article-box h2") or enp.get("subtitle", ""),
        byline=byline or enp.get("author", ""),
        paragraphs=tuple(_body(container)),
        url=url,
        page=f"{page_no}版：{page_name}" if page_no and page_name else page_name or page_no,
        page_no=page_no,
        page_name=page_name,
        date=_date_of(url, tree),
        source=SOURCE,
    )


# ---- fetching --------------------------------------------------------------------------


Progress = Callable[[int, int], None]


async def _layout(fetcher: Fetcher, url: str) -> LayoutPage:
    page = await fetcher.get(url, cache=True)
    try:
        return parse_layout(page.text, url)
    except LayoutChangedError:
        fetcher.forget(url)  # a bad copy must not stick in the cache
        raise


async def _article(fetcher: Fetcher, link: ArticleLink, layout: LayoutPage) -> Article:
    page = await fetcher.get(link.url, cache=True)
    try:
        art = parse_article(page.text, link.url)
    except LayoutChangedError:
        fetcher.forget(link.url)
        raise
    # the layout page is the authority for the page name and number
    return replace(art, page=layout.label, page_no=layout.number or art.page_no,
                   page_name=layout.name or art.page_name, date=art.date or layout.date)


async def fetch_day(day: date, *, base_url: str, fetcher: Fetcher, progress: Progress | None = None,
                    concurrency: int | None = None) -> PaperDay:
    """Every article of the day's paper. Raises only when page 01 cannot be read or parsed
    (`FetchError`, `LayoutChangedError`) or when no article at all could be parsed."""
    result = PaperDay(date=day, era=era_for(day))
    first_url = layout_url(base_url, day, 1)
    first = await _layout(fetcher, first_url)
    result.pages.append(first)

    todo: list[PageLink] = []
    for p in first.pages:
        if p.is_ad:
            result.ad_pages.append(p)
        elif p.url != first_url:
            todo.append(p)

    async def read_page(p: PageLink) -> LayoutPage | None:
        try:
            return await _layout(fetcher, p.url)
        except Exception as e:  # one bad page must not sink the day
            result.errors.append(SourceFailure.of(SOURCE, p.url, e))
            return None

    for lp in await asyncio.gather(*(read_page(p) for p in todo)):
        if lp is not None:
            result.pages.append(lp)

    links: list[tuple[ArticleLink, LayoutPage]] = []
    seen: set[str] = set()
    for lp in result.pages:
        if "广告" in lp.name:
            continue
        for a in lp.articles:
            if a.url not in seen:
                seen.add(a.url)
                links.append((a, lp))

    gate = asyncio.Semaphore(concurrency or fetcher.concurrency)
    done = 0
    layout_errors: list[LayoutChangedError] = []

    async def read_article(link: ArticleLink, lp: LayoutPage) -> Article | None:
        nonlocal done
        async with gate:
            try:
                return await _article(fetcher, link, lp)
            except LayoutChangedError as e:
                layout_errors.append(e)
                result.errors.append(SourceFailure.of(SOURCE, link.url, e))
            except Exception as e:
                result.errors.append(SourceFailure.of(SOURCE, link.url, e))
            finally:
                done += 1
                if progress is not None:
                    progress(done, len(links))
        return None

    fetched = await asyncio.gather(*(read_article(a, lp) for a, lp in links))
    for art in fetched:
        if art is None:
            continue
        if art.paragraphs:
            result.articles.append(art)
        else:  # a photo with no caption: nothing to read or summarise
            result.skipped.append(SourceFailure(SOURCE, art.url, "no text (photo only)"))
    if layout_errors and not result.articles:
        raise layout_errors[0]
    # errors in page order, whatever order the tasks finished in
    order = {a.url: i for i, (a, _) in enumerate(links)}
    order.update({p.url: -1 for p in todo})
    result.errors.sort(key=lambda f: order.get(f.url, 0))
    return result
