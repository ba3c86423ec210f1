"""The daily study reminder with an injected clock on a real SQLite file: it fires at the chosen
local time once per day (ticks at 07:59, 08:00, 08:00:30, 12:00 → one send; the next day one
more), survives a restart (a new App on the same database file sends nothing twice), stops after
opting out, retries a failed send, and is wired to APScheduler as `bot.reminders:tick`."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import bot.reminders as reminders
from bot.app import App
from bot.config import load_settings
from bot.progress import ProgressError, ProgressStore
from bot.reminders import (
    GRACE,
    JOB_ID,
    TICK_REF,
    Reminder,
    ReminderPref,
    configure,
    install_job,
    next_reminder_at,
    reminder_due,
    run_due_reminders,
    set_reminder,
    tick,
)
from bot.roadmap_cli import remind_command, reminder_setting

SH = ZoneInfo("Asia/Shanghai")
D1 = date(2025, 3, 3)
D2 = D1 + timedelta(days=1)
U = "discord:1001"


def at(day: date, hh: int, mm: int, ss: int = 0, tz: ZoneInfo = SH) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=tz)


PREF = ReminderPref(U, "08:00", "Asia/Shanghai")


# ---- the pure decision --------------------------------------------------------------------------------------

def test_due_at_the_chosen_local_time_once_a_day() -> None:
    sent: date | None = None
    fired = []
    for t in (at(D1, 7, 59), at(D1, 8, 0), at(D1, 8, 0, 30), at(D1, 12, 0),
              at(D2, 7, 59), at(D2, 8, 0), at(D2, 8, 0, 30), at(D2, 12, 0)):
        day = reminder_due(t, PREF, sent)
        if day is not None:
            fired.append((t, day))
            sent = day
    assert fired == [(at(D1, 8, 0), D1), (at(D2, 8, 0), D2)]


def test_grace_zones_midnight_and_opt_out() -> None:
    assert reminder_due(at(D1, 8, 0) + GRACE, PREF, None) == D1  # back from downtime within the grace
    assert reminder_due(at(D1, 8, 0) + GRACE + timedelta(seconds=1), PREF, None) is None  # too late today
    assert reminder_due(at(D1, 9, 0), PREF, D1.isoformat()) is None  # the store's key is a string
    late = ReminderPref(U, "23:30", "Asia/Shanghai")
    assert reminder_due(at(D2, 0, 10), late, None) == D1  # yesterday's slot, just after midnight
    assert reminder_due(at(D2, 0, 10), late, D1) is None
    # the user's own zone: 08:00 in London is 16:00 in Shanghai
    london = ReminderPref(U, "08:00", "Europe/London")
    assert reminder_due(at(D1, 15, 59), london, None) is None
    assert reminder_due(at(D1, 16, 0), london, None) == D1
    assert reminder_due(datetime(2025, 3, 3, 8, 0), london, None) == D1  # naive = the user's local time
    assert reminder_due(at(D1, 8, 0), ReminderPref(U, "08:00", "Asia/Shanghai", enabled=False), None) is None
    assert reminder_due(at(D1, 8, 0), ReminderPref(U, "8点", "Asia/Shanghai"), None) is None


def test_a_reminder_set_after_todays_slot_starts_tomorrow() -> None:
    pref = ReminderPref(U, "08:00", "Asia/Shanghai", since=at(D1, 10, 29))
    assert reminder_due(at(D1, 10, 30), pref, None) is None  # not at once, though within the grace
    assert reminder_due(at(D2, 8, 0), pref, None) == D2
    assert next_reminder_at(at(D1, 10, 30), pref, None) == at(D2, 8, 0)
    assert reminder_due(at(D1, 8, 0), ReminderPref(U, "08:00", "Asia/Shanghai", since=at(D1, 8, 0)), None) == D1


def test_next_reminder_time() -> None:
    assert next_reminder_at(at(D1, 7, 0), PREF, None) == at(D1, 8, 0)
    assert next_reminder_at(at(D1, 8, 5), PREF, None) == at(D1, 8, 5)  # due now
    assert next_reminder_at(at(D1, 8, 5), PREF, D1) == at(D2, 8, 0)
    assert next_reminder_at(at(D1, 8, 5), ReminderPref(U, "08:00", "Asia/Shanghai", False), None) is None


# ---- end to end on the store ------------------------------------------------------------------------------------

class FakeDiscord:
    """The only fake: what would have been sent; can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[Reminder] = []
        self.broken = False

    async def send(self, r: Reminder) -> None:
        if self.broken:
            raise ConnectionError("discord gateway down")
        self.sent.append(r)

    @property
    def log(self) -> list[tuple[str, str]]:
        return [(r.user_id, r.day) for r in self.sent]


@pytest.fixture
async def apps() -> AsyncIterator[Callable[[], App]]:
    made: list[App] = []

    def make() -> App:
        made.append(App(load_settings()))
        return made[-1]

    yield make
    for a in made:
        await a.aclose()


async def opt_in(app: App, user: str = U, hhmm: str = "08:00", **kw: str) -> None:
    ps = await ProgressStore.for_app(app)
    await set_reminder(ps, user, hhmm, at(D1, 0, 0), **kw)


async def test_fires_once_a_day_survives_a_restart_and_stops_after_opting_out(apps, isolated_env: Path) -> None:
    discord = FakeDiscord()
    app = apps()
    await opt_in(app, channel_id="555", guild_id="g1")
    for t in (at(D1, 7, 59), at(D1, 8, 0), at(D1, 8, 0, 30), at(D1, 12, 0)):
        await run_due_reminders(app, t, discord.send)
    assert discord.log == [(U, "2025-03-03")]
    r = discord.sent[0]
    assert (r.channel_id, r.guild_id) == ("555", "g1")
    assert r.text.startswith("📚 学习提醒 / study reminder · 2025-03-03") and "/remind off" in r.text
    assert "[阅读]" in r.text  # today's part of the plan
    assert "@" not in r.text  # no mentions; the adapter adds the user's own

    await app.aclose()  # the bot restarts on the same SQLite file
    app = apps()
    assert await run_due_reminders(app, at(D1, 8, 1), discord.send) == []
    assert await run_due_reminders(app, at(D1, 12, 0), discord.send) == []
    with sqlite3.connect(isolated_env / "studybot.db") as conn:
        rows = conn.execute("select kind, key, target, state from deliveries").fetchall()
    assert rows == [("reminder", "2025-03-03", U, "sent")]

    for t in (at(D2, 7, 59), at(D2, 8, 0), at(D2, 8, 0, 30), at(D2, 12, 0)):
        await run_due_reminders(app, t, discord.send)
    assert discord.log == [(U, "2025-03-03"), (U, "2025-03-04")]

    out = io.StringIO()
    assert await remind_command(app, U, "off", out, now=at(D2, 13, 0)) == 0
    assert "已关闭" in out.getvalue()
    D3 = D2 + timedelta(days=1)
    for t in (at(D3, 8, 0), at(D3, 9, 0)):
        assert await run_due_reminders(app, t, discord.send) == []
    await app.aclose()
    app = apps()  # still off after a restart
    assert await run_due_reminders(app, at(D3, 10, 0), discord.send) == []
    assert len(discord.sent) == 2

    out = io.StringIO()
    assert await remind_command(app, U, "on", out, now=at(D3, 20, 0)) == 0  # back on at the same time
    assert "08:00" in out.getvalue() and "2025-03-06 08:00" in out.getvalue()
    D4 = D3 + timedelta(days=1)
    await run_due_reminders(app, at(D4, 8, 0), discord.send)
    assert discord.log[-1] == (U, D4.isoformat()) and len(discord.sent) == 3


async def test_each_user_at_their_own_time_and_zone(apps) -> None:
    discord = FakeDiscord()
    app = apps()
    await opt_in(app, "discord:1", "08:00")
    await opt_in(app, "discord:2", "21:30")
    await opt_in(app, "discord:3", "08:00", tz="Europe/London")  # 16:00 in Shanghai
    await opt_in(app, "terminal:local", "08:00")
    only_discord = lambda u: u.startswith("discord:")  # noqa: E731
    for hh, mm in ((8, 0), (12, 0), (16, 0), (21, 30), (23, 0)):
        await run_due_reminders(app, at(D1, hh, mm), discord.send, accept=only_discord)
    assert discord.log == [("discord:1", "2025-03-03"), ("discord:3", "2025-03-03"), ("discord:2", "2025-03-03")]


async def test_opting_in_late_in_the_morning_waits_for_tomorrow(apps) -> None:
    discord = FakeDiscord()
    app = apps()
    text = await reminder_setting(app, U, "08:00", now=at(D1, 10, 29))
    assert "下次提醒 / next: 2025-03-04 08:00" in text
    assert await run_due_reminders(app, at(D1, 10, 30), discord.send) == []
    await run_due_reminders(app, at(D2, 8, 0), discord.send)
    assert discord.log == [(U, "2025-03-04")]


async def test_two_processes_ticking_together_send_once(apps) -> None:
    discord = FakeDiscord()
    a, b = apps(), apps()
    await opt_in(a)
    await opt_in(a, "discord:2")
    await asyncio.gather(run_due_reminders(a, at(D1, 8, 0), discord.send),
                         run_due_reminders(b, at(D1, 8, 0, 1), discord.send))
    assert sorted(discord.log) == [("discord:1001", "2025-03-03"), ("discord:2", "2025-03-03")]


async def test_a_failed_send_is_retried_by_a_later_tick(apps) -> None:
    discord = FakeDiscord()
    app = apps()
    await opt_in(app)
    discord.broken = True
    res = await run_due_reminders(app, at(D1, 8, 0), discord.send)
    assert [(r.status, r.error) for r in res] == [("failed", "discord gateway down")]
    discord.broken = False
    res = await run_due_reminders(app, at(D1, 8, 1), discord.send)
    assert [r.status for r in res] == ["sent"]
    assert await run_due_reminders(app, at(D1, 8, 2), discord.send) == []
    assert discord.log == [(U, "2025-03-03")]


async def test_reminder_settings_are_checked_and_shown(apps) -> None:
    app = apps()
    ps = await ProgressStore.for_app(app)
    for bad in ("25:00", "8点", "08:60", "on"):
        with pytest.raises(ProgressError) as e:
            await set_reminder(ps, U, bad, at(D1, 0, 0))
        assert ("HH:MM" in str(e.value) or "no reminder time" in str(e.value)), bad
    with pytest.raises(ProgressError, match="unknown time zone"):
        await set_reminder(ps, U, "08:00", at(D1, 0, 0), tz="Mars/Olympus")
    text = await reminder_setting(app, U, None, now=at(D1, 7, 0))
    assert "已关闭" in text
    text = await reminder_setting(app, U, "7:05", tz="Asia/Shanghai", now=at(D1, 7, 0))
    assert "每天 07:05（Asia/Shanghai）" in text and "2025-03-03 07:05" in text and "Discord" not in text
    assert (await ps.prefs(U) or {})["remind_at"] == "07:05"
    err = io.StringIO()
    assert await remind_command(app, "terminal:local", "9:00 pm", io.StringIO(), err=err, now=at(D1, 7, 0)) == 2
    assert "时间格式" in err.getvalue()
    out = io.StringIO()
    assert await remind_command(app, "terminal:local", "21:00", out, now=at(D1, 7, 0)) == 0
    assert "Discord" in out.getvalue()  # the terminal user is told who delivers reminders


# ---- APScheduler -----------------------------------------------------------------------------------------------

async def test_the_job_persists_in_the_store_database_and_tick_sends_what_is_due(apps, isolated_env: Path,
                                                                               monkeypatch) -> None:
    from jobs.scheduler import build_scheduler

    monkeypatch.setattr(reminders, "_context", None)
    assert await tick() == []  # fired before configure: nothing, no crash
    discord = FakeDiscord()
    app = apps()
    await opt_in(app)
    s1 = build_scheduler(app)
    s1.start(paused=True)
    try:
        assert install_job(s1, SH) == JOB_ID and install_job(s1, SH) == JOB_ID
        jobs = s1.get_jobs()
        assert [j.id for j in jobs] == [JOB_ID]
        job = jobs[0]
        assert job.func_ref == TICK_REF and job.coalesce and job.max_instances == 1
        assert job.trigger.interval == timedelta(minutes=1)
    finally:
        s1.shutdown(wait=False)
    with sqlite3.connect(isolated_env / "studybot.db") as conn:
        assert [r[0] for r in conn.execute("select id from apscheduler_jobs")] == [JOB_ID]
    s2 = build_scheduler(app)  # a restart reads the persisted job
    s2.start(paused=True)
    try:
        assert [j.id for j in s2.get_jobs()] == [JOB_ID]
        install_job(s2, SH)
        assert len(s2.get_jobs()) == 1
    finally:
        s2.shutdown(wait=False)

    now = {"t": at(D1, 7, 59)}
    configure(app, discord.send, clock=lambda: now["t"])
    assert await tick() == []
    now["t"] = at(D1, 8, 0)
    assert [r.status for r in await tick()] == ["sent"]
    now["t"] = at(D1, 8, 1)
    assert await tick() == []
    assert discord.log == [(U, "2025-03-03")]
