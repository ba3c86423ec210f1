"""`/roadmap`, `/plan`, `/progress` through the cog with spec'd fake interactions (real SQLite, real
roadmap and charts), and the Discord delivery of the daily study reminders."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import discord
import pytest

import bot.reminders as reminders
from bot.discord_app.client import StudyBot
from bot.discord_app.cogs import roadmap as cog
from bot.discord_app.common import NO_MENTIONS
from bot.discord_app.data import user_key
from bot.progress import ProgressStore
from bot.reminders import Reminder, run_due_reminders
from bot.roadmap import load as load_roadmap

from .conftest import interaction, invoke
from .fakes import FakeChannel, FakeGuild, FakeInteraction, FakeUser, Log

NONE = NO_MENTIONS.to_dict()
PNG = b"\x89PNG\r\n\x1a\n"
SENDS = ("send_message", "followup", "edit_original", "send", "reply", "edit")


# ---- helpers --------------------------------------------------------------------------------------------

def check_messages(log: Log) -> None:
    """Mentions off everywhere; every message and embed within Discord's limits."""
    for c in (c for c in log.calls if c.what in SENDS):
        assert c.mentions == NONE, (c.what, c.mentions)
        assert len(c.content) <= 2000
        assert len(c.embeds) <= 10
        total = 0
        for e in c.embeds:
            d = e.to_dict()
            title, desc = d.get("title", ""), d.get("description", "")
            footer = (d.get("footer") or {}).get("text", "")
            fields = d.get("fields", [])
            assert len(title) <= 256 and len(desc) <= 4096 and len(footer) <= 2048 and len(fields) <= 25
            assert all(len(f["name"]) <= 256 and len(f["value"]) <= 1024 for f in fields)
            total += len(title) + len(desc) + len(footer) + sum(len(f["name"]) + len(f["value"]) for f in fields)
        assert total <= 6000, total


def text_of(log: Log) -> str:
    return "\n".join(log.texts())


def sent(log: Log) -> list[Any]:
    return [c for c in log.calls if c.what in SENDS]


def assert_deferred_then_followups(i: FakeInteraction, *, ephemeral: bool) -> None:
    assert i.log.kinds[0] == "defer", i.log.kinds
    assert i.log.calls[0].kwargs == {"thinking": True, "ephemeral": ephemeral}
    assert set(i.log.kinds[1:]) == {"followup"}
    assert all(bool(c.kwargs.get("ephemeral")) is ephemeral for c in i.log.of("followup"))
    check_messages(i.log)


def assert_quick_error(i: FakeInteraction, *needles: str) -> None:
    """Refused before deferring: one private error message, in Chinese and English."""
    assert i.log.kinds == ["send_message"], i.log.kinds
    c = i.log.calls[0]
    assert c.kwargs["ephemeral"] is True
    text = text_of(i.log)
    for n in needles:
        assert n in text, (n, text)
    check_messages(i.log)


def local(bot: StudyBot, t: datetime) -> datetime:
    return t.astimezone(bot.app.settings.zone)


def next_slot(bot: StudyBot, hhmm: str) -> datetime:
    """The first HH:MM (the bot's zone) after the bot's current wall time."""
    now = local(bot, datetime.fromtimestamp(bot.wall_clock(), UTC))
    h, m = map(int, hhmm.split(":"))
    slot = now.replace(hour=h, minute=m, second=0, microsecond=0)
    return slot if slot > now else slot + timedelta(days=1)


def error(status: int, cls: type[discord.HTTPException] = discord.HTTPException) -> discord.HTTPException:
    return cls(SimpleNamespace(status=status, reason="x"), "boom")  # type: ignore[arg-type]


class DM:
    """A user's direct-message channel: `fetch_user` gives something with `send`."""

    def __init__(self, log: Log) -> None:
        self.channel = FakeChannel(log, kind=discord.ChannelType.private)
        self.asked: list[int] = []

    async def __call__(self, uid: int) -> FakeChannel:
        self.asked.append(uid)
        return self.channel


# ---- /roadmap ------------------------------------------------------------------------------------------------

async def test_roadmap_shows_every_step_privately(bot: StudyBot) -> None:
    i = interaction(bot)
    await invoke(bot, "roadmap", i)
    assert_deferred_then_followups(i, ephemeral=True)
    text = text_of(i.log)
    for s in load_roadmap():
        assert s.title in text and f"[{s.id}]" in text
    assert "/roadmap step:N" in text and "/roadmap done:TASK_ID" in text  # slash hints, not the terminal's
    assert "studybot roadmap" not in text


@pytest.mark.parametrize("ref", ["2", "qs2", "QS2"])
async def test_roadmap_step_shows_the_steps_details(bot: StudyBot, ref: str) -> None:
    step = load_roadmap()[1]
    i = interaction(bot)
    await invoke(bot, "roadmap", i, step=ref)
    assert_deferred_then_followups(i, ephemeral=True)
    text = text_of(i.log)
    assert "第 2 步 / Step 2" in text and step.title in text
    for t in step.tasks:
        assert t.id in text and t.title in text
    assert f"/roadmap done:{step.tasks[0].id}" in text


async def test_done_and_undo_change_the_users_progress_in_the_store(bot: StudyBot) -> None:
    guild, user = FakeGuild(), FakeUser()
    task = load_roadmap()[0].tasks[0]
    ps = await ProgressStore.for_app(bot.app)

    i = interaction(bot, guild=guild, user=user)
    await invoke(bot, "roadmap", i, done=task.id)
    assert_deferred_then_followups(i, ephemeral=True)
    assert "已完成 / done" in text_of(i.log) and task.id in text_of(i.log)
    assert set(await ps.done_tasks(user_key(user.id))) == {task.id}
    assert await ps.members(str(guild.id)) == [user_key(user.id)]  # marked in this server: the server view counts it

    again = interaction(bot, guild=guild, user=user)
    await invoke(bot, "roadmap", again, done=task.id)
    assert "已经标记过完成 / already marked done" in text_of(again.log)

    details = interaction(bot, guild=guild, user=user)
    await invoke(bot, "roadmap", details, step="1")
    assert f"[✓] {task.id}" in text_of(details.log)

    undo = interaction(bot, guild=guild, user=user)
    await invoke(bot, "roadmap", undo, undo=task.id)
    assert_deferred_then_followups(undo, ephemeral=True)
    assert "unmarked" in text_of(undo.log)
    assert await ps.done_tasks(user_key(user.id)) == {}


@pytest.mark.parametrize(("options", "needles"), [
    ({"step": "99"}, ("没有第 99 步", "no step")),
    ({"step": "nonsense"}, ("没有第", "no step")),
    ({"done": "qs1-t99"}, ("没有这个任务", "no such task")),
    ({"undo": "???"}, ("没有这个任务", "no such task")),
    ({"step": "1", "done": "qs1-t1"}, ("一次只能用", "one of step, done, undo")),
])
async def test_roadmap_mistakes_get_a_quick_private_bilingual_answer(bot: StudyBot, options: dict[str, str],
                                                                     needles: tuple[str, ...]) -> None:
    i = interaction(bot)
    await invoke(bot, "roadmap", i, **options)
    assert_quick_error(i, *needles)
    assert await (await ProgressStore.for_app(bot.app)).done_tasks(user_key(i.user.id)) == {}


async def test_autocomplete_offers_steps_and_the_right_tasks(bot: StudyBot) -> None:
    user = FakeUser()
    i = interaction(bot, user=user)
    steps = await cog.step_autocomplete(i, "")
    assert len(steps) == min(25, len(load_roadmap())) and steps[0].value == load_roadmap()[0].id
    assert [c.value for c in await cog.step_autocomplete(i, "rlhf")] == ["rlhf"]
    first = load_roadmap()[0].tasks[0].id
    await invoke(bot, "roadmap", interaction(bot, user=user), done=first)
    todo = await cog.todo_autocomplete(i, "qs1")
    assert todo and first not in [c.value for c in todo] and all(c.value.startswith("qs1") for c in todo)
    assert [c.value for c in await cog.done_autocomplete(i, "")] == [first]
    every = await cog.todo_autocomplete(i, "")
    assert len(every) == 25 and all(len(c.name) <= 100 for c in every)
    assert [c.value for c in await cog.remind_autocomplete(i, "o")] == ["off", "on"]
    assert [c.value for c in await cog.remind_autocomplete(i, "08:")] == ["08:00"]
    assert [c.value for c in await cog.remind_autocomplete(i, "06:45")] == ["06:45"]


# ---- /plan -----------------------------------------------------------------------------------------------------

async def test_plan_gives_the_week_and_keeps_the_budget(bot: StudyBot) -> None:
    i = interaction(bot)
    await invoke(bot, "plan", i, budget=90)
    assert_deferred_then_followups(i, ephemeral=True)
    text = text_of(i.log)
    assert "7 天学习计划" in text and "每天约 90 分钟" in text
    assert "每日学习提醒已关闭" in text and "/plan remind:HH:MM" in text  # how to opt in, as a slash command
    prefs = await (await ProgressStore.for_app(bot.app)).prefs(user_key(i.user.id))
    assert prefs is not None and prefs["budget_min"] == 90


async def test_a_long_plan_is_split_into_embeds_within_limits(bot: StudyBot) -> None:
    i = interaction(bot)
    await invoke(bot, "plan", i, budget=480)
    assert_deferred_then_followups(i, ephemeral=True)
    embeds = [e for c in i.log.of("followup") for e in c.embeds]
    assert len(embeds) >= 2 and sum(len(e.description or "") for e in embeds) > 4096


async def test_remind_binds_the_reminder_to_the_channel_and_off_stops_it(bot: StudyBot, app: Any) -> None:
    guild, user = FakeGuild(), FakeUser()
    log = Log()
    channel = FakeChannel(log)
    uid = user_key(user.id)
    i = interaction(bot, guild=guild, user=user, channel=channel, log=log)
    await invoke(bot, "plan", i, remind="08:30")
    assert_deferred_then_followups(i, ephemeral=True)
    assert "每日学习提醒已开启" in text_of(log) and "这个频道 / this channel" in text_of(log)
    ps = await ProgressStore.for_app(app)
    prefs = await ps.prefs(uid)
    assert prefs is not None
    assert (prefs["remind_at"], prefs["remind_enabled"]) == ("08:30", 1)
    assert (prefs["channel_id"], prefs["guild_id"]) == (str(channel.id), str(guild.id))

    dm = DM(log)
    deliver = cog.ReminderDelivery(lambda cid: {channel.id: channel}[cid], dm)
    slot = next_slot(bot, "08:30")
    before = len(channel.sent)
    assert await run_due_reminders(app, slot - timedelta(minutes=1), deliver, accept=cog.is_discord_user) == []
    first = await run_due_reminders(app, slot + timedelta(minutes=1), deliver, accept=cog.is_discord_user)
    again = await run_due_reminders(app, slot + timedelta(minutes=9), deliver, accept=cog.is_discord_user)
    assert [r.status for r in first] == ["sent"] and again == []
    posts = channel.sent[before:]
    assert len(posts) == 1 and not dm.asked
    assert posts[0].content.startswith(f"<@{user.id}> 📚 学习提醒")  # named, never pinged:
    assert log.of("send")[-1].mentions == NONE
    assert "/plan remind:off" in posts[0].content

    off = interaction(bot, guild=guild, user=user, channel=channel)
    await invoke(bot, "plan", off, remind="off")
    assert_deferred_then_followups(off, ephemeral=True)
    assert "每日学习提醒已关闭" in text_of(off.log)
    assert (await ps.prefs(uid) or {})["remind_enabled"] == 0
    tomorrow = slot + timedelta(days=1, minutes=1)
    assert await run_due_reminders(app, tomorrow, deliver, accept=cog.is_discord_user) == []
    assert len(channel.sent) == before + 1


async def test_remind_in_direct_messages_comes_by_direct_message(bot: StudyBot, app: Any) -> None:
    user = FakeUser()
    uid = user_key(user.id)
    await invoke(bot, "plan", interaction(bot, user=user), remind="07:15")  # first in a server channel
    i = interaction(bot, user=user, dm=True)
    await invoke(bot, "plan", i, remind="07:30")
    assert_deferred_then_followups(i, ephemeral=True)
    assert "私信 / a direct message" in text_of(i.log)
    prefs = await (await ProgressStore.for_app(app)).prefs(uid) or {}
    assert (prefs["remind_at"], prefs["channel_id"], prefs["guild_id"]) == ("07:30", None, None)

    log = Log()
    dm = DM(log)
    deliver = cog.ReminderDelivery(lambda cid: pytest.fail("no channel for a DM reminder"), dm)
    res = await run_due_reminders(app, next_slot(bot, "07:30") + timedelta(minutes=1), deliver,
                                  accept=cog.is_discord_user)
    assert [r.status for r in res] == ["sent"] and dm.asked == [user.id]
    assert len(dm.channel.sent) == 1 and f"<@{user.id}>" not in dm.channel.sent[0].content
    check_messages(log)


@pytest.mark.parametrize(("options", "needles"), [
    ({"remind": "25:00"}, ("HH:MM", "时间格式")),
    ({"remind": "早上八点"}, ("HH:MM", "时间格式")),
    ({"budget": 5}, ("每日学习时间", "daily budget")),
])
async def test_plan_mistakes_get_a_quick_private_bilingual_answer(bot: StudyBot, options: dict[str, Any],
                                                                  needles: tuple[str, ...]) -> None:
    i = interaction(bot)
    await invoke(bot, "plan", i, **options)
    assert_quick_error(i, *needles)
    assert await (await ProgressStore.for_app(bot.app)).prefs(user_key(i.user.id)) is None


async def test_remind_on_without_a_time_is_a_private_error_after_deferring(bot: StudyBot) -> None:
    i = interaction(bot)
    await invoke(bot, "plan", i, remind="on")
    assert_deferred_then_followups(i, ephemeral=True)
    assert "还没有设置提醒时间" in text_of(i.log) and "no reminder time yet" in text_of(i.log)


# ---- /progress --------------------------------------------------------------------------------------------

def attached_png(log: Log) -> bytes:
    files = [c.kwargs["file"] for c in log.of("followup") if c.kwargs.get("file") is not None]
    assert len(files) == 1
    assert files[0].filename == "progress.png"
    return files[0].fp.getvalue()


async def test_progress_defers_and_attaches_the_users_chart(bot: StudyBot) -> None:
    i = interaction(bot)
    await invoke(bot, "progress", i)
    assert_deferred_then_followups(i, ephemeral=True)
    assert attached_png(i.log).startswith(PNG)
    text = text_of(i.log)
    assert "学习进度 / progress" in text and "已完成 0/" in text


async def test_progress_server_view_in_public_counts_the_servers_members(bot: StudyBot) -> None:
    guild = FakeGuild()
    await invoke(bot, "roadmap", interaction(bot, guild=guild), done=load_roadmap()[0].tasks[0].id)
    i = interaction(bot, guild=guild)
    await invoke(bot, "progress", i, server=True)
    assert_deferred_then_followups(i, ephemeral=False)
    assert attached_png(i.log).startswith(PNG)
    assert "服务器学习进度" in text_of(i.log) and "成员 1 人" in text_of(i.log)


async def test_progress_server_view_is_refused_in_direct_messages(bot: StudyBot) -> None:
    i = interaction(bot, dm=True)
    await invoke(bot, "progress", i, server=True)
    assert_quick_error(i, "只能在服务器里", "works in a server only")


async def test_a_failing_chart_still_gives_the_numbers(bot: StudyBot, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any, **kw: Any) -> tuple[bytes, list[str]]:
        raise OSError("disk full")

    monkeypatch.setattr(cog, "render_chart", broken)
    i = interaction(bot)
    await invoke(bot, "progress", i)
    assert_deferred_then_followups(i, ephemeral=True)
    assert all(c.kwargs.get("file") is None for c in i.log.calls)
    assert "学习进度 / progress" in text_of(i.log) and "the chart failed" in text_of(i.log)


async def test_an_unexpected_failure_is_a_private_message_not_an_exception(
        bot: StudyBot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(*a: Any, **kw: Any) -> str:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(cog, "roadmap_text", broken)
    i = interaction(bot)
    with caplog.at_level(logging.ERROR):
        await invoke(bot, "roadmap", i)
    assert_deferred_then_followups(i, ephemeral=True)
    assert "内部错误 / internal error" in text_of(i.log) and "database on fire" not in text_of(i.log)
    assert "database on fire" in caplog.text


# ---- reminder delivery ------------------------------------------------------------------------------------

def reminder(channel_id: int | None, user_id: int = 4242, text: str = "📚 学习提醒 @everyone 关闭 /remind off") -> Reminder:
    return Reminder(f"discord:{user_id}", "2026-01-01", str(channel_id) if channel_id else None, None, text)


async def test_delivery_posts_once_to_the_channel_without_pings() -> None:
    log = Log()
    channel = FakeChannel(log)
    dm = DM(log)
    await cog.ReminderDelivery(lambda cid: {channel.id: channel}[cid], dm)(reminder(channel.id))
    assert log.kinds == ["send"] and not dm.asked
    assert log.calls[0].target is channel and log.calls[0].mentions == NONE
    assert "@everyone" not in log.calls[0].content and "/plan remind:off" in log.calls[0].content


class Closed(FakeChannel):
    def __init__(self, log: Log, exc: discord.HTTPException) -> None:
        super().__init__(log)
        self.exc = exc

    async def send(self, content: str | None = None, **kwargs: Any) -> Any:
        raise self.exc


async def test_delivery_falls_back_to_a_dm_when_the_channel_is_closed_to_the_bot() -> None:
    log = Log()
    dm = DM(log)
    closed = Closed(log, error(403, discord.Forbidden))
    await cog.ReminderDelivery(lambda cid: closed, dm)(reminder(closed.id))
    assert dm.asked == [4242] and len(dm.channel.sent) == 1
    check_messages(log)


async def test_delivery_swallows_closed_dms_and_lets_transient_errors_retry(caplog: pytest.LogCaptureFixture) -> None:
    log = Log()
    shut = Closed(log, error(403, discord.Forbidden))

    async def user(uid: int) -> Any:
        return shut

    with caplog.at_level(logging.WARNING):
        await cog.ReminderDelivery(lambda cid: shut, user)(reminder(None))  # logged, not raised
    assert "not delivered" in caplog.text
    down = Closed(log, error(503, discord.DiscordServerError))
    with pytest.raises(discord.DiscordServerError):  # run_due_reminders releases the claim: a later tick retries
        await cog.ReminderDelivery(lambda cid: down, user)(reminder(down.id))


async def test_the_bot_starts_the_reminders_with_its_scheduler(bot: StudyBot, monkeypatch: pytest.MonkeyPatch) -> None:
    import jobs.scheduler

    async def ready() -> None: ...

    async def no_digest(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("no digest scheduler in this test")

    async def idle() -> None: ...

    monkeypatch.setattr(reminders, "_context", None)
    monkeypatch.setattr(bot, "wait_until_ready", ready)
    monkeypatch.setattr(jobs.scheduler, "start_scheduler", no_digest)
    monkeypatch.setattr(bot, "send_nudges", idle)
    monkeypatch.setattr(bot, "maintenance", idle)
    await bot._background_jobs()
    try:
        assert bot.scheduler is not None and bot.scheduler.get_job(reminders.JOB_ID) is not None
        ctx = reminders._context
        assert ctx is not None and ctx.app is bot.app and isinstance(ctx.send, cog.ReminderDelivery)
        assert ctx.accept is not None and ctx.accept("discord:1") and not ctx.accept("terminal:local")
    finally:
        scheduler = bot.scheduler
        await bot.close()
    assert bot.scheduler is None and not scheduler.running

