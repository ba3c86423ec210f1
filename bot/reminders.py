"""The opt-in daily study reminder: at the user's chosen local time, once per day, easy to stop.

- `reminder_due(now, pref, last_sent_day)` is the pure decision: the local day whose reminder is
  due now, or None. Due when the latest slot (HH:MM in the user's zone, today's or yesterday's)
  has passed at most GRACE ago and that day was not sent yet. A bot down at 08:00 and back at
  10:00 still reminds (once); one back at 20:00 stays quiet for that day.
- `run_due_reminders(app, now, send)` is one tick: it reads the preferences and the last day sent
  from the store, claims `("reminder", YYYY-MM-DD, user)` in the deliveries table before sending
  (the unique key makes it exactly once across ticks, restarts and two processes), sends, and
  releases the claim when the send failed so a later tick retries within the grace window.
- Production: APScheduler runs the module-level coroutine `bot.reminders:tick` every minute from
  the store's own job table (`jobs.scheduler.build_scheduler`), coalesced, one instance at a time.
  Every tick recomputes what is due, so a missed, doubled or coalesced firing changes nothing.

Opting out (`remind off`) clears `remind_enabled`; the time and zone are kept for a later `on`.
Turning it on (or moving the time) records `remind_since`: a slot that passed before that never
fires, so setting 08:00 at 10:30 starts tomorrow instead of reminding at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.quiz.srs import from_ts, utc

from .plan import plan_for, render_day
from .progress import ProgressError, ProgressStore

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.app import App

log = logging.getLogger(__name__)

KIND = "reminder"
GRACE = timedelta(hours=6)
EVERY = timedelta(minutes=1)
JOB_ID = "reminders:tick"
TICK_REF = "bot.reminders:tick"
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class ReminderPref:
    user_id: str
    at: str  # HH:MM in `tz`
    tz: str
    enabled: bool = True
    channel_id: str | None = None  # None: a direct message
    guild_id: str | None = None
    since: datetime | None = None  # when it was turned on or moved: a slot before that never fires


@dataclass(slots=True)
class Reminder:
    """What the adapter sends: `text` is plain (no mentions); the adapter may add the user's."""
    user_id: str
    day: str  # the user's local date: the delivery's unique key
    channel_id: str | None
    guild_id: str | None
    text: str


@dataclass(slots=True)
class ReminderResult:
    user_id: str
    day: str
    status: str  # sent | failed | skipped (claimed elsewhere)
    error: str | None = None


Send = Callable[[Reminder], Awaitable[Any]]


def parse_hhmm(value: str) -> time:
    m = _HHMM.match((value or "").strip())
    if not m:
        raise ProgressError(f"时间格式应为 HH:MM，例如 08:00 / time must be HH:MM (e.g. 08:00), got {value!r}")
    return time(int(m.group(1)), int(m.group(2)))


def check_zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (KeyError, ValueError) as e:
        raise ProgressError(f"未知时区 / unknown time zone {tz!r}（例如 / e.g. Asia/Shanghai）") from e
    return tz


def reminder_due(now: datetime, pref: ReminderPref, last_sent_day: date | str | None,
                 grace: timedelta = GRACE) -> date | None:
    """The local day whose reminder is due at `now`, or None. Pure.

    `now` is aware (naive = the user's local time); `last_sent_day` is the last local day a
    reminder was sent (or claimed) for this user. A reminder set at 10:30 for 08:00 starts tomorrow.
    """
    if not pref.enabled:
        return None
    try:
        at = parse_hhmm(pref.at)
    except ProgressError:
        return None
    zone = ZoneInfo(pref.tz)
    local = now.replace(tzinfo=zone) if now.tzinfo is None else now.astimezone(zone)
    last = date.fromisoformat(last_sent_day) if isinstance(last_sent_day, str) else last_sent_day
    for day in (local.date(), local.date() - timedelta(days=1)):
        slot = datetime.combine(day, at, tzinfo=zone)
        if slot <= local:  # the latest slot that has passed decides
            fresh = pref.since is None or slot >= pref.since
            if fresh and local - slot <= grace and (last is None or last < day):
                return day
            return None
    return None


def next_reminder_at(now: datetime, pref: ReminderPref, last_sent_day: date | str | None) -> datetime | None:
    """When the next reminder goes out (aware, the user's zone); None when off."""
    if not pref.enabled:
        return None
    zone = ZoneInfo(pref.tz)
    local = utc(now).astimezone(zone)
    if reminder_due(now, pref, last_sent_day) is not None:
        return local
    at = parse_hhmm(pref.at)
    slot = datetime.combine(local.date(), at, tzinfo=zone)
    return slot if slot > local else datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)


def pref_of(row: dict[str, Any], default_tz: str) -> ReminderPref:
    since = row.get("remind_since")
    return ReminderPref(str(row["user_id"]), str(row.get("remind_at") or ""), str(row.get("tz") or default_tz),
                        bool(row.get("remind_enabled")), row.get("channel_id"), row.get("guild_id"),
                        from_ts(since) if since is not None else None)


# ---- preferences --------------------------------------------------------------------------------------

async def set_reminder(ps: ProgressStore, user: str, at: str | None, now: datetime, *, tz: str | None = None,
                       channel_id: str | None = None, guild_id: str | None = None) -> dict[str, Any]:
    """`at` = "HH:MM" turns the reminder on at that time; "off" (or None) turns it off; "on" turns it
    back on at the last time chosen. ProgressError (Chinese and English) on bad values."""
    word = (at or "off").strip().lower()
    values: dict[str, Any] = {}
    since = utc(now).timestamp()
    if word in ("off", "stop", "关", "关闭"):
        values["remind_enabled"] = 0
    elif word in ("on", "开", "开启"):
        old = await ps.prefs(user) or {}
        if not old.get("remind_at"):
            raise ProgressError("还没有设置提醒时间 / no reminder time yet: use HH:MM, e.g. 08:00")
        values.update(remind_enabled=1, remind_since=since)
    else:
        t = parse_hhmm(word)
        values.update(remind_at=f"{t.hour:02d}:{t.minute:02d}", remind_enabled=1, remind_since=since)
    if tz is not None:
        values["tz"] = check_zone(tz)
    if channel_id is not None:
        values["channel_id"] = channel_id
    if guild_id is not None:
        values["guild_id"] = guild_id
    await ps.set_prefs(user, now, **values)
    return await ps.prefs(user) or {}


# ---- one tick -------------------------------------------------------------------------------------------

async def reminder_text(app: App, ps: ProgressStore, user: str, now: datetime) -> str:
    """Today's part of the user's plan."""
    plan = await plan_for(ps, user, now, tz=app.settings.tz)
    today = plan.days[0]
    head = f"📚 学习提醒 / study reminder · {today.day.isoformat()}"
    tail = "查看整周计划 /plan · 关闭提醒 /remind off / full week: /plan · stop: /remind off"
    return "\n".join([head, *render_day(today), tail])


_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


async def run_due_reminders(app: App, now: datetime, send: Send, *,
                            accept: Callable[[str], bool] | None = None,
                            grace: timedelta = GRACE) -> list[ReminderResult]:
    """Send every reminder due at `now`, each at most once per user and local day.

    `accept(user_id)` lets an adapter take only its users (e.g. ids starting with "discord:").
    """
    from jobs.scheduler import last_runs

    lock = _locks.setdefault(app, asyncio.Lock())
    async with lock:  # ticks of one process run one at a time
        ps = await ProgressStore.for_app(app)
        last = await last_runs(ps.store, KIND)
        results: list[ReminderResult] = []
        for row in await ps.all_prefs(reminders_only=True):
            pref = pref_of(row, app.settings.tz)
            if accept is not None and not accept(pref.user_id):
                continue
            day = reminder_due(now, pref, last.get(pref.user_id), grace)
            if day is None:
                continue
            key = day.isoformat()
            if not await ps.store.claim(KIND, key, pref.user_id):
                results.append(ReminderResult(pref.user_id, key, "skipped"))
                continue
            try:
                text = await reminder_text(app, ps, pref.user_id, now)
                await send(Reminder(pref.user_id, key, pref.channel_id, pref.guild_id, text))
            except Exception as e:  # whatever went wrong: release the claim, a later tick retries
                await ps.store.finish_delivery(KIND, key, pref.user_id, False)
                log.warning("reminder for %s on %s not sent: %s", pref.user_id, key, e)
                results.append(ReminderResult(pref.user_id, key, "failed", str(e) or type(e).__name__))
                continue
            await ps.store.finish_delivery(KIND, key, pref.user_id, True)
            results.append(ReminderResult(pref.user_id, key, "sent"))
        return results


# ---- APScheduler wiring ---------------------------------------------------------------------------------

@dataclass
class _Context:
    app: App
    send: Send
    accept: Callable[[str], bool] | None = None
    clock: Callable[[], datetime] | None = None


_context: _Context | None = None


def configure(app: App, send: Send, *, accept: Callable[[str], bool] | None = None,
              clock: Callable[[], datetime] | None = None) -> None:
    """What `tick` works with (a persisted job carries only the function's name)."""
    global _context
    _context = _Context(app, send, accept, clock)


async def tick() -> list[ReminderResult]:
    """The scheduled job (`bot.reminders:tick`): send whatever reminder is due now."""
    ctx = _context
    if ctx is None:
        log.warning("reminder tick fired before bot.reminders.configure(); skipped")
        return []
    now = ctx.clock() if ctx.clock else datetime.now(ctx.app.settings.zone)
    try:
        return await run_due_reminders(ctx.app, now, ctx.send, accept=ctx.accept)
    except Exception:  # a failing tick must not kill the scheduler; the next one retries
        log.exception("reminder tick failed")
        return []


def install_job(scheduler: AsyncIOScheduler, tz: Any) -> str:
    """One interval job (every minute) calling `bot.reminders:tick`; idempotent across restarts."""
    from apscheduler.triggers.interval import IntervalTrigger

    if scheduler.get_job(JOB_ID) is None:
        scheduler.add_job(TICK_REF, IntervalTrigger(seconds=int(EVERY.total_seconds()), timezone=tz), id=JOB_ID,
                          name="daily study reminders", misfire_grace_time=int(EVERY.total_seconds()),
                          coalesce=True, max_instances=1, replace_existing=True)
    return JOB_ID


async def start_reminders(app: App, send: Send, *, scheduler: AsyncIOScheduler | None = None,
                          accept: Callable[[str], bool] | None = None) -> AsyncIOScheduler:
    """Production entry (the Discord adapter, once connected): configure, add the job to the given
    scheduler (e.g. the digest's) or a new one in the store's database, and run one tick now."""
    from jobs.scheduler import build_scheduler

    configure(app, send, accept=accept)
    await ProgressStore.for_app(app)  # the database file and tables exist before the job store opens
    if scheduler is None:
        scheduler = build_scheduler(app)
        scheduler.start()
    install_job(scheduler, app.settings.zone)
    await tick()
    return scheduler
