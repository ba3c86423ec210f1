"""When the digest is due (a pure function of now and the last runs), exactly one digest per day
and channel across 08:00, a restart at 08:00:30 and a start at 10:00 after downtime (a real SQLite
store, digests built from loopback sources, a fake Discord `send`), and the APScheduler wiring
(persistent job store in the same database, cron in STUDYBOT_TZ, misfire grace, coalescing).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jobs.scheduler as sched_mod
from bot.app import App
from bot.config import load_settings
from jobs.classify import Classifier
from jobs.digest import Digest, load_digest
from jobs.scheduler import (
    CATCHUP_ID,
    GRACE,
    TICK_REF,
    DueRun,
    Subscription,
    build_scheduler,
    configure,
    due_runs,
    last_runs,
    load_subscriptions,
    run_due,
    start_scheduler,
    sync_jobs,
    sync_url,
    tick,
)
from tests.fixtures.sources.make_day import build_paper, serve_paper, serve_weibo

SH = ZoneInfo("Asia/Shanghai")
D1 = date(2025, 3, 14)
D2 = D1 + timedelta(days=1)
DEAD = "http://127.0.0.1:9"


def at(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=SH)


SUBS = [Subscription("g1", "111", "08:00"), Subscription("g2", "222", "08:00"), Subscription("g3", "333", "09:30")]


# ---- the pure decision ----------------------------------------------------------------------------

def test_nothing_is_due_before_the_time() -> None:
    assert due_runs(at(D1, 7, 59, 59), SUBS, {}, SH) == []


def test_at_the_time_each_channel_is_due_once() -> None:
    assert due_runs(at(D1, 8, 0), SUBS, {}, SH) == [DueRun("111", D1), DueRun("222", D1)]
    # a restart 30 s later: the runs are recorded, nothing is due
    assert due_runs(at(D1, 8, 0, 30), SUBS, {"111": D1, "222": D1}, SH) == []


def test_a_start_at_ten_after_downtime_catches_up_once() -> None:
    last = {"111": D1 - timedelta(days=1), "222": D1 - timedelta(days=1), "333": D1 - timedelta(days=1)}
    assert due_runs(at(D1, 10, 0), SUBS, last, SH) == [DueRun("111", D1), DueRun("222", D1), DueRun("333", D1)]
    assert due_runs(at(D1, 10, 0, 5), SUBS, {k: D1 for k in last}, SH) == []


def test_the_grace_window_ends() -> None:
    # 20:30 is 12.5 h after 08:00 (too late) but 11 h after 09:30
    assert due_runs(at(D1, 20, 30), SUBS, {}, SH) == [DueRun("333", D1)]
    assert due_runs(at(D1, 20, 30), SUBS, {}, SH, grace=timedelta(hours=1)) == []


def test_a_late_evening_slot_is_still_due_after_midnight() -> None:
    subs = [Subscription("g", "c", "23:30")]
    assert due_runs(at(D2, 0, 30), subs, {}, SH) == [DueRun("c", D1)]
    assert due_runs(at(D2, 0, 30), subs, {"c": D1}, SH) == []


def test_disabled_invalid_and_duplicate_subscriptions() -> None:
    subs = [Subscription("g1", "c1", "08:00", enabled=False), Subscription("g2", "c2", "8:61"),
            Subscription("g3", "c3", "7:05"), Subscription("g4", "c3", "07:05")]
    assert due_runs(at(D1, 8, 0), subs, {}, SH) == [DueRun("c3", D1)]


def test_now_in_another_zone_or_naive() -> None:
    utc_eight = datetime(2025, 3, 14, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    assert due_runs(utc_eight, SUBS[:1], {}, SH) == [DueRun("111", D1)]
    assert due_runs(datetime(2025, 3, 14, 7, 59), SUBS[:1], {}, SH) == []  # naive: local time
    assert due_runs(datetime(2025, 3, 14, 8, 1), SUBS[:1], {}, SH) == [DueRun("111", D1)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4 * 24 * 3600), min_size=1, max_size=30),
       st.sampled_from(["00:00", "08:00", "13:45", "23:59"]))
def test_any_tick_schedule_posts_each_day_at_most_once(offsets: list[int], hhmm: str) -> None:
    """Ticks at arbitrary moments (restarts, misfires, catch-ups): a day is posted exactly when some
    tick falls within its grace window, and never twice."""
    start = at(D1, 0, 0)
    ticks = [start + timedelta(seconds=s) for s in sorted(offsets)]
    last: dict[str, date] = {}
    posted: list[date] = []
    for now in ticks:
        for run in due_runs(now, [Subscription("g", "c", hhmm)], last, SH):
            posted.append(run.day)
            last["c"] = run.day
    assert len(posted) == len(set(posted)) and posted == sorted(posted)
    h, m = map(int, hhmm.split(":"))
    for k in range(-1, 5):
        day = D1 + timedelta(days=k)
        slot = at(day, h, m)
        assert (day in posted) == any(slot <= t <= slot + GRACE for t in ticks), day


# ---- the store side: exactly once across restarts ---------------------------------------------------

@pytest.fixture(scope="session")
def clf(request: pytest.FixtureRequest) -> Classifier:
    """The same prototype cache as tests/jobs/test_digest.py (keyed by labels.yaml and embedder)."""
    c = Classifier(request.config.cache.mkdir("studybot-digest-classifier"))
    c.prototypes()
    return c


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated_env: Path, clf: Classifier) -> None:
    for k in ("PEOPLE_DAILY_BASE_URL", "WEIBO_HOT_URL", "WEIBO_MOBILE_URL", "WEIBO_SUMMARY_URL"):
        monkeypatch.setenv(k, DEAD)
    monkeypatch.setenv("FETCH_DELAY_S", "0")
    monkeypatch.setenv("STUDYBOT_TZ", "Asia/Shanghai")
    monkeypatch.setenv("STUDYBOT_PROVIDERS", "offline")
    monkeypatch.setenv("STUDYBOT_DATABASE_URL", f"sqlite:///{tmp_path}/studybot.db")
    assert clf.data_dir is not None
    # the data dir holds the classifier's prototype cache, as after a first run in production
    shutil.copytree(clf.data_dir / "classifier", isolated_env / "classifier")
    monkeypatch.setattr(sched_mod, "_context", None)


@pytest.fixture
async def sources(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """Two days of a small paper and a hot list on loopback."""
    papers = [build_paper(d, pages=2, ad_pages=(), articles_per_page=2) for d in (D1, D2)]
    async with serve_paper(*papers) as srv, await serve_weibo(n=5) as wb:
        monkeypatch.setenv("PEOPLE_DAILY_BASE_URL", srv.url)
        monkeypatch.setenv("WEIBO_HOT_URL", wb.hot_url)
        monkeypatch.setenv("WEIBO_MOBILE_URL", wb.mobile_url)
        monkeypatch.setenv("WEIBO_SUMMARY_URL", wb.summary_url)
        yield srv


@pytest.fixture
async def apps() -> AsyncIterator[Callable[[], App]]:
    made: list[App] = []

    def make() -> App:
        made.append(App(load_settings()))
        return made[-1]

    yield make
    for a in made:
        await a.aclose()


async def subscribe(app: App, rows: list[tuple[str, str, str, int]]) -> None:
    from sqlalchemy import insert

    from bot.store import subscriptions

    store = await app.store()
    async with store.engine.begin() as conn:
        await conn.execute(insert(subscriptions), [
            {"guild_id": g, "channel_id": c, "time": t, "enabled": e, "updated_at": 0.0} for g, c, t, e in rows])


class FakeDiscord:
    """The only fake: records what would have been posted; can be told to fail for a channel."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str]] = []
        self.broken: set[str] = set()

    async def send(self, channel: str, digest: Digest) -> None:
        assert digest.ok and digest.news
        if channel in self.broken:
            raise ConnectionError("discord gateway down")
        self.posts.append((channel, digest.date))


async def test_one_digest_per_day_and_channel_across_restarts_and_downtime(sources, apps, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_CHANNEL_ID", "444")  # the first server's default, 08:00
    discord = FakeDiscord()
    app = apps()
    await subscribe(app, [("g1", "111", "08:00", 1), ("g2", "222", "08:00", 1), ("g3", "333", "09:30", 1),
                          ("g9", "999", "08:00", 0)])
    d1, d2 = D1.isoformat(), D2.isoformat()

    assert await run_due(app, discord.send, at(D1, 7, 59)) == []
    res = await run_due(app, discord.send, at(D1, 8, 0))
    assert [(r.target, r.status) for r in res] == [("111", "sent"), ("222", "sent"), ("444", "sent")]
    assert discord.posts == [("111", d1), ("222", d1), ("444", d1)]

    await app.aclose()  # the bot restarts
    app = apps()
    assert await run_due(app, discord.send, at(D1, 8, 0, 30)) == []
    await run_due(app, discord.send, at(D1, 9, 30))  # the 09:30 subscription
    assert await run_due(app, discord.send, at(D1, 10, 0)) == []
    assert discord.posts[3:] == [("333", d1)]

    await app.aclose()  # down overnight and all morning; back at 10:00
    app = apps()
    await run_due(app, discord.send, at(D2, 10, 0))
    assert await run_due(app, discord.send, at(D2, 10, 0, 5)) == []
    assert discord.posts[4:] == [("111", d2), ("222", d2), ("333", d2), ("444", d2)]

    # once per (day, channel), and the store says so
    assert len(discord.posts) == len(set(discord.posts)) == 8
    store = await app.store()
    assert await last_runs(store) == {"111": D2, "222": D2, "333": D2, "444": D2}
    assert (await load_digest(store, D1)) is not None and (await load_digest(store, D2)) is not None


async def test_two_processes_ticking_together_post_once(sources, apps) -> None:
    discord = FakeDiscord()
    a, b = apps(), apps()  # two processes on one database
    await subscribe(a, [("g1", "111", "08:00", 1), ("g2", "222", "08:00", 1)])
    await asyncio.gather(run_due(a, discord.send, at(D1, 8, 0)), run_due(b, discord.send, at(D1, 8, 0, 1)))
    assert sorted(discord.posts) == [("111", D1.isoformat()), ("222", D1.isoformat())]


async def test_a_failed_post_is_retried_by_the_catch_up_tick(sources, apps) -> None:
    discord = FakeDiscord()
    discord.broken = {"222"}
    app = apps()
    await subscribe(app, [("g1", "111", "08:00", 1), ("g2", "222", "08:00", 1)])
    res = await run_due(app, discord.send, at(D1, 8, 0))
    assert [(r.target, r.status) for r in res] == [("111", "sent"), ("222", "failed")]
    discord.broken.clear()
    res = await run_due(app, discord.send, at(D1, 8, 10))
    assert [(r.target, r.status) for r in res] == [("222", "sent")]
    assert await run_due(app, discord.send, at(D1, 8, 20)) == []
    assert discord.posts == [("111", D1.isoformat()), ("222", D1.isoformat())]


async def test_subscriptions_from_the_database_win_over_the_default(apps, monkeypatch) -> None:
    monkeypatch.setenv("DIGEST_CHANNEL_ID", "111")
    monkeypatch.setenv("DIGEST_TIME", "07:00")
    app = apps()
    assert await load_subscriptions(await app.store(), app.settings) == [Subscription("default", "111", "07:00")]
    await subscribe(app, [("g1", "111", "09:00", 0)])
    assert await load_subscriptions(await app.store(), app.settings) == [Subscription("g1", "111", "09:00", False)]


# ---- APScheduler -------------------------------------------------------------------------------------

def test_sync_url() -> None:
    assert sync_url("sqlite+aiosqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert sync_url("postgresql+asyncpg://u@h/db") == "postgresql://u@h/db"


async def test_jobs_persist_in_the_store_database_and_survive_a_restart(apps, tmp_path) -> None:
    app = apps()
    await app.store()
    subs = [Subscription("g1", "111", "08:00"), Subscription("g2", "222", "09:30"),
            Subscription("g3", "333", "8:00"), Subscription("g4", "444", "07:00", enabled=False)]
    s1 = build_scheduler(app)
    s1.start(paused=True)
    try:
        assert sync_jobs(s1, subs, SH) == ["digest:08:00", "digest:09:30", CATCHUP_ID]
        jobs = {j.id: j for j in s1.get_jobs()}
        assert set(jobs) == {"digest:08:00", "digest:09:30", CATCHUP_ID}
        for j in jobs.values():
            assert j.func_ref == TICK_REF and j.coalesce and j.max_instances == 1
            assert j.misfire_grace_time == int(GRACE.total_seconds())
        cron = jobs["digest:09:30"].trigger
        assert "hour='9'" in str(cron) and "minute='30'" in str(cron) and str(cron.timezone) == "Asia/Shanghai"
        next_830 = jobs["digest:08:00"].next_run_time
    finally:
        s1.shutdown(wait=False)
    # the job table lives in the store's own SQLite file
    with sqlite3.connect(tmp_path / "studybot.db") as conn:
        ids = {r[0] for r in conn.execute("select id from apscheduler_jobs")}
        assert ids == {"digest:08:00", "digest:09:30", CATCHUP_ID}
        assert conn.execute("select count(*) from deliveries").fetchone()[0] == 0

    s2 = build_scheduler(app)  # a restart reads the persisted jobs
    s2.start(paused=True)
    try:
        loaded = {j.id: j for j in s2.get_jobs()}
        assert set(loaded) == {"digest:08:00", "digest:09:30", CATCHUP_ID}
        assert loaded["digest:08:00"].next_run_time == next_830
        sync_jobs(s2, subs, SH)  # no duplicates
        assert len(s2.get_jobs()) == 3
        moved = [Subscription("g1", "111", "08:00"), Subscription("g2", "222", "10:15")]
        assert sync_jobs(s2, moved, SH) == ["digest:08:00", "digest:10:15", CATCHUP_ID]
        assert {j.id for j in s2.get_jobs()} == {"digest:08:00", "digest:10:15", CATCHUP_ID}
    finally:
        s2.shutdown(wait=False)


async def test_a_missed_cron_firing_within_grace_runs_once_after_start(sources, apps) -> None:
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED

    discord = FakeDiscord()
    app = apps()
    await subscribe(app, [("g1", "111", "08:00", 1)])
    configure(app, discord.send, clock=lambda: at(D1, 10, 0))  # the bot is back at 10:00
    s = build_scheduler(app)
    events: list[tuple[str, int]] = []
    done = asyncio.Event()

    def listen(ev: Any) -> None:
        events.append((ev.job_id, ev.code))
        if ev.job_id == "digest:08:00":
            done.set()

    s.add_listener(listen, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    s.start(paused=True)
    try:
        sync_jobs(s, await load_subscriptions(await app.store(), app.settings), SH)
        # as if persisted before the downtime: its 08:00 run was missed two hours ago
        s.modify_job("digest:08:00", next_run_time=datetime.now(SH) - timedelta(hours=2))
        s.resume()
        await asyncio.wait_for(done.wait(), 60)  # an event, not a timing sleep
        assert events == [("digest:08:00", EVENT_JOB_EXECUTED)]
        assert s.get_job("digest:08:00").next_run_time > datetime.now(SH)  # coalesced: not run again
        assert discord.posts == [("111", D1.isoformat())]
        assert await tick() == []  # another firing (a second misfire, the catch-up job) posts nothing
        assert discord.posts == [("111", D1.isoformat())]
    finally:
        s.shutdown(wait=False)


async def test_tick_before_configure_does_nothing() -> None:
    assert await tick() == []


async def test_start_scheduler_wires_jobs_and_runs_a_catch_up_tick(apps) -> None:
    discord = FakeDiscord()
    app = apps()
    await subscribe(app, [("g1", "111", "08:00", 0)])  # disabled: the catch-up tick posts nothing
    s = await start_scheduler(app, discord.send)
    try:
        assert s.running
        assert {j.id for j in s.get_jobs()} == {CATCHUP_ID}
        assert discord.posts == []
    finally:
        s.shutdown(wait=False)
