"""RSS fallback: fresh items only, HTML stripped, dead feeds reported, over loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobs.sources.rss import fetch_rss, parse_feed
from jobs.sources.types import LayoutChangedError
from tests.stubs.http_server import Reply, Script, StubServer

from .conftest import fixture_text

BEIJING = timezone(timedelta(hours=8))
NOW = datetime(2025, 3, 14, 8, 0, tzinfo=BEIJING)


def test_parse_feed_keeps_only_fresh_dated_items() -> None:
    articles, rejected = parse_feed(fixture_text("rss.xml").encode(), "http://x/feed", NOW)
    assert [a.title for a in articles] == ["新能源汽车下乡活动启动", "春季学期开学工作平稳"]
    assert rejected == 3  # four days old, years old, undated
    first, second = articles
    assert first.source == "rss" and first.page == "测试新闻源" and first.byline == "本报记者 钱多多"
    assert first.paragraphs == ("3月13日，新能源汽车下乡活动在安徽合肥启动。", "活动将持续到年底，覆盖200多个县。")
    assert first.published_at == datetime(2025, 3, 13, 21, 30, tzinfo=UTC)
    assert first.date == NOW.date()
    assert second.paragraphs == ("各地中小学春季学期开学工作平稳有序。", "多地推出课后服务新举措。")  # content:encoded, no script
    assert first.to_item().kind == "article"


def test_max_age_is_a_parameter() -> None:
    articles, _ = parse_feed(fixture_text("rss.xml"), "http://x/feed", NOW, max_age=timedelta(hours=6))
    assert [a.title for a in articles] == ["新能源汽车下乡活动启动"]
    naive_now = datetime(2025, 3, 14, 0, 0)  # taken as UTC
    articles, _ = parse_feed(fixture_text("rss.xml"), "http://x/feed", naive_now)
    assert len(articles) == 2


def test_not_a_feed() -> None:
    with pytest.raises(LayoutChangedError):
        parse_feed(b"<html><body>moved</body></html>", "http://x/feed", NOW)


async def test_fetch_rss_over_loopback(make_fetcher) -> None:
    feed = fixture_text("rss.xml")
    script = Script({"/a.xml": [Reply.text(feed, ctype="application/rss+xml; charset=utf-8")],
                     "/b.xml": [Reply.text(feed, ctype="application/rss+xml")],
                     "/gone.xml": [Reply.text("gone", 404)],
                     "/page.html": [Reply.text("<html><body>not a feed</body></html>")]})
    async with StubServer(script) as srv:
        urls = [srv.url + p for p in ("/a.xml", "/gone.xml", "/b.xml", "/page.html")]
        res = await fetch_rss(urls, make_fetcher(), NOW)
    assert [a.title for a in res] == ["新能源汽车下乡活动启动", "春季学期开学工作平稳"]  # same links kept once
    assert len(res) == 2 and res.rejected == 6
    assert sorted(e.url for e in res.errors) == sorted([srv.url + "/gone.xml", srv.url + "/page.html"])
    assert all(e.source == "rss" for e in res.errors)
    assert "rss+xml" in srv.requests[0].headers["accept"]


async def test_no_feeds_no_requests(make_fetcher) -> None:
    res = await fetch_rss([], make_fetcher(), NOW)
    assert list(res) == [] and res.errors == []
