"""Digest benchmark: a full day of People's Daily (140 articles) and the Weibo hot list, end to
end on loopback, offline provider, FETCH_DELAY_S=0.

    .venv/bin/python bench/digest.py [--articles 140] [--concurrency 4] [--latency-ms 20]

The paper and Weibo are synthetic days served by tests/fixtures/sources/make_day.py on
127.0.0.1; each request waits `--latency-ms` in the server (a network-like delay, so that
concurrency shows). The server counts requests in flight: `max_in_flight` must not exceed
FETCH_CONCURRENCY. The classifier's label prototypes are built (or read from the data dir's
cache) before the clock starts and reported as `classifier_warmup_s`: production pays that
once per data dir. Every figure is a `name: value` line on stdout; exit 1 when the digest
takes 60 s or more, misses an article or exceeds the concurrency bound.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.sources.make_day import serve_paper_day, serve_weibo  # noqa: E402
from tests.stubs.http_server import Request  # noqa: E402

LIMIT_S = 60.0


def out(name: str, value: object) -> None:
    if isinstance(value, float):
        value = f"{value:.3f}"
    print(f"{name}: {value}", flush=True)


class InFlight:
    """Requests being answered by the paper server right now, and the most ever seen."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.now = 0
        self.max = 0

    async def hook(self, _req: Request) -> None:
        self.now += 1
        self.max = max(self.max, self.now)
        try:
            await asyncio.sleep(self.latency_s)  # a network-like delay (benchmark only)
        finally:
            self.now -= 1


async def run(args: argparse.Namespace) -> int:
    tz_name = "Asia/Shanghai"
    today = datetime.now(ZoneInfo(tz_name)).date()
    flight = InFlight(args.latency_ms / 1000)
    paper = await serve_paper_day(today, total_articles=args.articles, hook=flight.hook)
    weibo = await serve_weibo(n=args.topics)
    data = Path(tempfile.mkdtemp(prefix="studybot-bench-digest-"))
    os.environ.update({
        "STUDYBOT_ENV_FILE": "none", "STUDYBOT_DATA_DIR": str(data), "STUDYBOT_TZ": tz_name, "NO_PROXY": "*",
        "PEOPLE_DAILY_BASE_URL": paper.url, "WEIBO_HOT_URL": weibo.hot_url, "WEIBO_MOBILE_URL": weibo.mobile_url,
        "WEIBO_SUMMARY_URL": weibo.summary_url, "FETCH_DELAY_S": "0", "FETCH_CONCURRENCY": str(args.concurrency),
        "STUDYBOT_PROVIDERS": "offline",
    })
    for k in ("NEWS_RSS_URLS", "WEIBO_COOKIE", "STUDYBOT_DATABASE_URL"):
        os.environ.pop(k, None)

    from bot.app import App
    from bot.config import load_settings
    from jobs.classify import get_classifier
    from jobs.digest_cli import digest_command

    settings = load_settings()
    app = App(settings)
    code = 1
    try:
        t0 = time.perf_counter()
        get_classifier(settings.data_path, settings.embedding_model).prototypes()
        out("classifier_warmup_s", time.perf_counter() - t0)

        buf = io.StringIO()
        t0 = time.perf_counter()
        rc = await digest_command(app, None, "offline", True, False, buf, dry_run=True, err=io.StringIO())
        wall = time.perf_counter() - t0
        digest = json.loads(buf.getvalue())
        expected = len(paper.paper.articles)
        summaries = [n["summary"] for n in digest["news"]]
        out("digest_wall_s", wall)
        out("articles", len(digest["news"]))
        out("articles_expected", expected)
        out("hot_topics", len(digest["hot_topics"]))
        out("errors", len(digest["errors"]))
        out("max_in_flight", flight.max)
        out("fetch_concurrency", args.concurrency)
        out("requests", len(paper.requests) + len(weibo.requests))
        out("ad_page_requests", sum(1 for p in paper.paper.ad_pages
                                    if paper.paper.layout_path(p.number) in paper.paths_requested()))
        out("empty_summaries", sum(1 for s in summaries if not s))
        out("max_summary_chars", max((len(s) for s in summaries), default=0))
        out("overview_chars", len(digest["overview"]))
        ok = (rc == 0 and wall < LIMIT_S and len(digest["news"]) == expected and not digest["errors"]
              and flight.max <= args.concurrency)
        out("ok", ok)
        code = 0 if ok else 1
    finally:
        await app.aclose()
        await paper.close()
        await weibo.close()
    return code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--articles", type=int, default=140)
    ap.add_argument("--topics", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    sys.exit(asyncio.run(run(ap.parse_args())))


if __name__ == "__main__":
    main()
