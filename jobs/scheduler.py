"""When to post the daily digest: a pure decision, and APScheduler driving it in production.

The decision is `due_runs(now, subscriptions, last_runs, tz, grace)`: a subscription is due
for day D when its time of day on D (in `STUDYBOT_TZ`) has passed, at most `grace` ago, and
its channel has not had D's digest yet (`last_runs[channel] < D`). So a bot that starts at
10:00 after downtime still posts today's 08:00 digest (once), and a restart at 08:00:30 posts
nothing new. `last_runs` comes from the store's `deliveries` table, and the store's claim in
`jobs.digest.post_digest` is the final guard against a second post (two processes, a race).

Production (`start_scheduler(app, send)`): an `AsyncIOScheduler` with a persistent
`SQLAlchemyJobStore` in the same database as the store (sync URL), one cron job per distinct
subscription time in `STUDYBOT_TZ` and a catch-up job every few minutes, all calling the
module-level coroutine `jobs.scheduler:tick` (persisted jobs reference it by name), with
`misfire_grace_time` = the grace window and `coalesce=True`; plus one tick at start-up. Every
tick recomputes what is due, so a missed, doubled or coalesced firing changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.app import App
    from bot.store import Store
    from jobs.digest import PostResult, Send

log = logging.getLogger(__name__)

GRACE = timedelta(hours=12)  # how late a digest may still go out (a bot down at 08:00, up at 10:00)
CATCHUP_EVERY = timedelta(minutes=10)  # retries failed sends and empty digests within the grace window
JOB_PREFIX = "digest:"
CATCHUP_ID = "digest:catchup"
TICK_REF = "jobs.scheduler:tick"
DEFAULT_GUILD = "default"  # the DIGEST_CHANNEL_ID subscription of the first server (no guild known)
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Subscription:
    guild_id: str
    channel_id: str
    time: str = "08:00"  # HH:MM in STUDYBOT_TZ
    enabled: bool = True


class DueRun(NamedTuple):
    target: str  # channel id
    day: date


def parse_hhmm(value: str) -> time | None:
    m = _HHMM.match((value or "").strip())
    return time(int(m.group(1)), int(m.group(2))) if m else None


def _at(day: date, t: time, tz: tzinfo) -> datetime:
    return datetime.combine(day, t, tzinfo=tz)


def due_runs(now: datetime, subscriptions: Iterable[Subscription], last_runs: Mapping[str, date | None],
             tz: tzinfo, grace: timedelta = GRACE) -> list[DueRun]:
    """What to post now: (channel, day) pairs, in subscription order. Pure.

    `now` is aware (a naive `now` is taken as local time in `tz`); `last_runs[channel]` is the
    last day whose digest that channel got (or claimed). Only the latest scheduled day within
    `grace` counts: yesterday's slot when it is, say, 00:30 and the time was 23:30.
    """
    local = now.replace(tzinfo=tz) if now.tzinfo is None else now.astimezone(tz)
    out: list[DueRun] = []
    seen: set[str] = set()
    for sub in subscriptions:
        t = parse_hhmm(sub.time)
        if not sub.enabled or t is None or not sub.channel_id or sub.channel_id in seen:
            continue
        seen.add(sub.channel_id)
        last = last_runs.get(sub.channel_id)
        for day in (local.date(), local.date() - timedelta(days=1)):
            slot = _at(day, t, tz)
            if slot <= local:
                if local - slot <= grace and (last is None or last < day):
                    out.append(DueRun(sub.channel_id, day))
                break  # the latest slot that has passed decides; older ones are coalesced into it
    return out


# ---- the store side ----------------------------------------------------------------------------

def default_subscription(settings: Any) -> Subscription | None:
    """DIGEST_CHANNEL_ID / DIGEST_TIME: the first server's digest, when set."""
    if not settings.digest_channel_id:
        return None
    return Subscription(DEFAULT_GUILD, str(settings.digest_channel_id), settings.digest_time, True)


async def load_subscriptions(store: Store, settings: Any) -> list[Subscription]:
    """Subscriptions from the database, plus the DIGEST_CHANNEL_ID default unless a database row
    names the same channel (rows made with /digest win, even disabled ones)."""
    from sqlalchemy import select

    from bot.store import subscriptions

    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(subscriptions).order_by(subscriptions.c.guild_id))).mappings().all()
    subs = [Subscription(str(r["guild_id"]), str(r["channel_id"]), str(r["time"] or "08:00"), bool(r["enabled"]))
            for r in rows]
    default = default_subscription(settings)
    if default and all(s.channel_id != default.channel_id for s in subs):
        subs.append(default)
    return subs


async def last_runs(store: Store, kind: str = "digest") -> dict[str, date]:
    """The latest day each channel got (or has claimed) a digest, from the deliveries table."""
    from sqlalchemy import func, select

    from bot.store import deliveries

    q = (select(deliveries.c.target, func.max(deliveries.c.key))
         .where(deliveries.c.kind == kind).group_by(deliveries.c.target))
    out: dict[str, date] = {}
    async with store.engine.connect() as conn:
        for target, key in (await conn.execute(q)).all():
            try:
                out[str(target)] = date.fromisoformat(str(key))
            except ValueError:
                continue
    return out


_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


async def run_due(app: App, send: Send, now: datetime, *, provider: str | None = None,
                  grace: timedelta = GRACE) -> list[PostResult]:
    """One tick: decide what is due and post it (once per date and channel)."""
    from jobs.digest import post_digest

    # ticks of one process run one at a time (start-up catch-up and a misfired cron job may meet)
    lock = _locks.setdefault(app, asyncio.Lock())
    async with lock:
        store = await app.store()
        tz = app.settings.zone
        subs = await load_subscriptions(store, app.settings)
        due = due_runs(now, subs, await last_runs(store), tz, grace)
        by_day: dict[date, list[str]] = {}
        for run in due:
            by_day.setdefault(run.day, []).append(run.target)
        results: list[PostResult] = []
        for day, targets in sorted(by_day.items()):
            results += await post_digest(app, day, targets, send, provider=provider, now=now)
        for r in results:
            if r.status in {"failed", "empty"}:
                log.warning("digest for %s not posted (%s): %s", r.target, r.status, r.error)
        return results


# ---- APScheduler wiring ------------------------------------------------------------------------

@dataclass
class _Context:
    app: App
    send: Send
    provider: str | None = None
    grace: timedelta = GRACE
    clock: Callable[[], datetime] | None = None


_context: _Context | None = None


def configure(app: App, send: Send, *, provider: str | None = None, grace: timedelta = GRACE,
              clock: Callable[[], datetime] | None = None) -> None:
    """What `tick` works with (persisted jobs carry only the function's name, not the App)."""
    global _context
    _context = _Context(app, send, provider, grace, clock)


async def tick() -> list[PostResult]:
    """The scheduled job (`jobs.scheduler:tick`): post whatever is due now."""
    ctx = _context
    if ctx is None:
        log.warning("digest tick fired before jobs.scheduler.configure(); skipped")
        return []
    tz = ctx.app.settings.zone
    now = ctx.clock() if ctx.clock else datetime.now(tz)
    try:
        return await run_due(ctx.app, ctx.send, now, provider=ctx.provider, grace=ctx.grace)
    except Exception:  # a failing tick must not kill the scheduler; the next one retries
        log.exception("digest tick failed")
        return []


def sync_url(db_url: str) -> str:
    """The store's async URL as the synchronous one APScheduler's job store needs."""
    for async_prefix, sync_prefix in (("sqlite+aiosqlite://", "sqlite://"),
                                      ("postgresql+asyncpg://", "postgresql://")):
        if db_url.startswith(async_prefix):
            return sync_prefix + db_url[len(async_prefix):]
    return db_url


def build_scheduler(app: App, *, jobstore_url: str | None = None) -> AsyncIOScheduler:
    """An AsyncIOScheduler whose jobs persist in the store's database (table apscheduler_jobs)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    url = jobstore_url or sync_url(app.settings.db_url)
    options: dict[str, Any] = {"connect_args": {"timeout": 10}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    store = SQLAlchemyJobStore(url=url, engine_options=options)
    return AsyncIOScheduler(jobstores={"default": store}, timezone=app.settings.zone,
                            job_defaults={"coalesce": True, "max_instances": 1})


def sync_jobs(scheduler: AsyncIOScheduler, subscriptions: Sequence[Subscription], tz: tzinfo,
              grace: timedelta = GRACE) -> list[str]:
    """One cron job per distinct enabled time, and the catch-up job; stale digest jobs removed.
    `replace_existing` keeps a restart from duplicating jobs (and keeps their misfire state)."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    grace_s = int(grace.total_seconds())
    times = sorted({t.strftime("%H:%M") for s in subscriptions if s.enabled and (t := parse_hhmm(s.time))})
    wanted = {f"{JOB_PREFIX}{hhmm}" for hhmm in times}
    for job in scheduler.get_jobs():
        if job.id.startswith(JOB_PREFIX) and job.id != CATCHUP_ID and job.id not in wanted:
            scheduler.remove_job(job.id)
    existing = {j.id: j for j in scheduler.get_jobs()}
    for hhmm in times:
        job_id = f"{JOB_PREFIX}{hhmm}"
        h, m = hhmm.split(":")
        old = existing.get(job_id)
        if old is not None and str(getattr(old.trigger, "timezone", "")) == str(tz):
            continue  # persisted from the last run: keep its next_run_time so a missed firing is caught
        scheduler.add_job(TICK_REF, CronTrigger(hour=int(h), minute=int(m), timezone=tz), id=job_id,
                          name=f"daily digest at {hhmm}", misfire_grace_time=grace_s, coalesce=True,
                          max_instances=1, replace_existing=True)
    if CATCHUP_ID not in existing:
        scheduler.add_job(TICK_REF, IntervalTrigger(seconds=int(CATCHUP_EVERY.total_seconds()), timezone=tz),
                          id=CATCHUP_ID, name="daily digest catch-up", misfire_grace_time=grace_s,
                          coalesce=True, max_instances=1, replace_existing=True)
    return sorted([*wanted, CATCHUP_ID])


async def start_scheduler(app: App, send: Send, *, provider: str | None = None,
                          grace: timedelta = GRACE) -> AsyncIOScheduler:
    """Production entry (the Discord adapter calls it once connected): configure, start, sync the
    jobs with the subscriptions, and run one catch-up tick now."""
    configure(app, send, provider=provider, grace=grace)
    store = await app.store()  # creates the database file and the store's tables first
    scheduler = build_scheduler(app)
    scheduler.start()
    sync_jobs(scheduler, await load_subscriptions(store, app.settings), app.settings.zone, grace)
    await tick()
    return scheduler


async def refresh_jobs(app: App, scheduler: AsyncIOScheduler, grace: timedelta = GRACE) -> list[str]:
    """After /digest changed a subscription: cron jobs follow the new times."""
    store = await app.store()
    return sync_jobs(scheduler, await load_subscriptions(store, app.settings), app.settings.zone, grace)
