"""`/roadmap`, `/plan`, `/progress`: issue #10's study path, week plan and progress chart in Discord,
and the delivery of the daily study reminders (`ReminderDelivery`, started by the client).

The words come from `bot.roadmap_cli` (the same text as the terminal); this module only checks the
options before deferring, points the command hints at the slash commands, and fits the text into
embeds within Discord's limits.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.plan import MAX_BUDGET_MIN, MIN_BUDGET_MIN, check_budget
from bot.progress import MASTERY_THRESHOLD, ProgressError, ProgressStore, find_task
from bot.reminders import Reminder, parse_hhmm
from bot.roadmap import load as load_roadmap
from bot.roadmap_cli import (
    mark_task,
    plan_text,
    progress_report,
    reminder_setting,
    resolve_step,
    roadmap_text,
    step_text,
)

from ...render import (
    COLOR_INFO,
    COLOR_OK,
    EMBED_DESCRIPTION,
    EMBED_TITLE,
    EmbedSpec,
    clip,
    pack_embeds,
    scrub,
    split_message,
)
from ..common import NO_MENTIONS, bot_of, defer, respond, show_error
from ..data import user_key

if TYPE_CHECKING:
    from ..client import StudyBot

log = logging.getLogger(__name__)

CHART_NAME = "progress.png"
OFF_WORDS = {"off", "stop", "关", "关闭"}  # the words bot.reminders.set_reminder accepts
REMIND_WORDS = OFF_WORDS | {"on", "开", "开启"}
MAX_CHOICES = 25  # Discord's autocomplete limit
CHOICE_NAME = 100

# The core's text names terminal commands; on Discord the slash commands do the same job.
_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"studybot roadmap --step N"), "/roadmap step:N"),
    (re.compile(r"studybot roadmap done ([\w-]+)"), r"/roadmap done:\1"),
    (re.compile(r"studybot quiz --topic ([\w…]+)"), r"/quiz start topic:\1"),
    (re.compile(r"(?<![\w/])/?remind (off|on|HH:MM)"), r"/plan remind:\1"),
)


def discord_hints(text: str) -> str:
    for pattern, repl in _HINTS:
        text = pattern.sub(repl, text)
    return text


def is_discord_user(user_id: str) -> bool:
    """The reminders this adapter delivers (the terminal's users have other ids)."""
    return user_id.startswith("discord:")


def text_embeds(title: str, text: str, *, footer: str = "", color: int = COLOR_INFO) -> list[EmbedSpec]:
    """Core text as embeds, the description cut at line breaks to fit 4096 characters."""
    parts = split_message(scrub(discord_hints(text)), EMBED_DESCRIPTION) or ["-"]
    specs = []
    for i, part in enumerate(parts):
        head = title if len(parts) == 1 else f"{title} ({i + 1}/{len(parts)})"
        specs.append(EmbedSpec(title=clip(head, EMBED_TITLE), description=part, color=color,
                               footer=footer if i == len(parts) - 1 else ""))
    return specs


async def send_embeds(interaction: discord.Interaction, specs: list[EmbedSpec], *, ephemeral: bool,
                      file: discord.File | None = None) -> None:
    """As few messages as Discord's limits allow (10 embeds, 6000 characters each); the file on the last."""
    groups = pack_embeds(specs)
    for i, group in enumerate(groups):
        last = i == len(groups) - 1
        await respond(interaction, embeds=group, ephemeral=ephemeral, file=file if last else None)


def _now(bot: StudyBot) -> datetime:
    return datetime.fromtimestamp(bot.wall_clock(), UTC)  # the bot's clock: tests inject it


# ---- autocomplete ------------------------------------------------------------------------------------

def _choice(name: str, value: str) -> app_commands.Choice[str]:
    return app_commands.Choice(name=clip(name, CHOICE_NAME), value=value)


async def step_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    cur = (current or "").strip().lower()
    out = []
    for n, s in enumerate(load_roadmap(), 1):
        label = f"{n}. {s.title} ({s.id})"
        if not cur or cur in label.lower():
            out.append(_choice(label, s.id))
    return out[:MAX_CHOICES]


async def _task_choices(interaction: discord.Interaction, current: str, *, done: bool) -> list[app_commands.Choice[str]]:
    """Task ids in roadmap order: the ones still to do (`done=False`) or the ones marked done."""
    cur = (current or "").strip().lower()
    try:
        ps = await ProgressStore.for_app(bot_of(interaction).app)
        marked = await ps.done_tasks(user_key(interaction.user.id))
    except Exception:  # an autocomplete that fails shows nothing; the command itself reports errors
        log.warning("task autocomplete failed", exc_info=True)
        return []
    out = []
    for s in load_roadmap():
        for t in s.tasks:
            if (t.id in marked) != done:
                continue
            label = f"{t.id} · {t.title}"
            if not cur or cur in label.lower():
                out.append(_choice(label, t.id))
                if len(out) == MAX_CHOICES:
                    return out
    return out


async def todo_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return await _task_choices(interaction, current, done=False)


async def done_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return await _task_choices(interaction, current, done=True)


REMIND_SUGGESTIONS = ("off", "on", "07:30", "08:00", "12:30", "19:00", "20:00", "21:30")


async def remind_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    cur = (current or "").strip().lower()[:CHOICE_NAME]
    out = [_choice(x, x) for x in REMIND_SUGGESTIONS if x.startswith(cur)]
    if cur not in REMIND_SUGGESTIONS and _typed_time(cur):
        out.insert(0, _choice(cur, cur))  # a time of the user's own, e.g. 06:45
    return out[:MAX_CHOICES]


def _typed_time(value: str) -> bool:
    try:
        parse_hhmm(value)
    except ProgressError:
        return False
    return True


# ---- the cog -------------------------------------------------------------------------------------------

class RoadmapCog(commands.Cog, name="Roadmap"):
    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot

    async def _run(self, interaction: discord.Interaction, work: Callable[[], Awaitable[None]]) -> None:
        """User mistakes as a short bilingual error; anything else logged, never raised."""
        try:
            await work()
        except ProgressError as e:
            await show_error(interaction, str(e))
        except Exception as e:
            await show_error(interaction, "内部错误 / internal error",
                             "请稍后再试；问题已记录 / please try again later; it was logged", exc=e)

    # -- /roadmap -------------------------------------------------------------------------------------

    @app_commands.command(name="roadmap", description="学习路线与你的进度 / the study roadmap and your progress")
    @app_commands.describe(step="查看某一步的详情（编号或 id）/ one step's details (number or id)",
                           done="标记任务完成（任务 id）/ mark a task done (task id)",
                           undo="取消任务的完成标记 / unmark a task (task id)")
    @app_commands.autocomplete(step=step_autocomplete, done=todo_autocomplete, undo=done_autocomplete)
    async def roadmap(self, interaction: discord.Interaction, step: str | None = None, done: str | None = None,
                      undo: str | None = None) -> None:
        chosen = [x for x in (step, done, undo) if x and x.strip()]
        if len(chosen) > 1:
            await show_error(interaction, "一次只能用 step、done、undo 中的一个 / use one of step, done, undo at a time")
            return
        try:  # cheap checks first, so a typo is answered at once (and privately)
            if step and step.strip():
                resolve_step(step)
            task = (done or undo or "").strip()
            if task:
                find_task(task)
        except ProgressError as e:
            await show_error(interaction, str(e))
            return
        await defer(interaction, ephemeral=True)

        async def work() -> None:
            app, uid, now = self.bot.app, user_key(interaction.user.id), _now(self.bot)
            if step and step.strip():
                n, _ = resolve_step(step)
                specs = text_embeds(f"📘 第 {n} 步 / Step {n}", await step_text(app, step.strip(), uid, now),
                                     footer="标记完成 / mark done: /roadmap done:TASK_ID")
            elif task:
                guild = str(interaction.guild_id) if interaction.guild_id else None
                msg = await mark_task(app, uid, task, undo=bool(undo and undo.strip()), guild=guild, now=now)
                specs = text_embeds("🗺️ 任务 / Task", msg, color=COLOR_OK)
            else:
                specs = text_embeds("🗺️ 学习路线 / Study roadmap", await roadmap_text(app, uid, now),
                                     footer="详情 / details: /roadmap step:N · 计划 / plan: /plan · 进度 / progress: "
                                            "/progress")
            await send_embeds(interaction, specs, ephemeral=True)

        await self._run(interaction, work)

    # -- /plan ------------------------------------------------------------------------------------------

    @app_commands.command(name="plan", description="未来 7 天的学习计划与每日提醒 / your 7-day study plan and daily reminder")
    @app_commands.describe(budget=f"每天学习分钟数（{MIN_BUDGET_MIN}-{MAX_BUDGET_MIN}，会记住）/ daily minutes "
                                  "(kept for next time)",
                           remind="每日提醒：HH:MM、on 或 off（发到这个频道）/ daily reminder: HH:MM, on or off "
                                  "(sent here)")
    @app_commands.autocomplete(remind=remind_autocomplete)
    async def plan(self, interaction: discord.Interaction,
                   budget: app_commands.Range[int, MIN_BUDGET_MIN, MAX_BUDGET_MIN] | None = None,
                   remind: str | None = None) -> None:
        word = (remind or "").strip()
        try:
            if budget is not None:
                check_budget(budget)
            if word and word.lower() not in REMIND_WORDS:
                parse_hhmm(word)
        except (ProgressError, ValueError) as e:
            await show_error(interaction, str(e))
            return
        await defer(interaction, ephemeral=True)

        async def work() -> None:
            app, uid, now = self.bot.app, user_key(interaction.user.id), _now(self.bot)
            dm = interaction.guild_id is None
            here = bool(word) and word.lower() not in OFF_WORDS and not dm  # turning it on in a server channel
            setting = await reminder_setting(app, uid, word or None, now=now,
                                             channel=str(interaction.channel_id) if here else None,
                                             guild=str(interaction.guild_id) if here else None)
            ps = await ProgressStore.for_app(app)
            if word and dm:  # in DMs the reminder comes by direct message: forget an earlier channel
                await ps.set_prefs(uid, now, channel_id=None, guild_id=None)
            if word and (await ps.prefs(uid) or {}).get("remind_enabled"):
                setting += "\n提醒发到 / delivered to: " + ("这个频道 / this channel" if here else "私信 / a direct message")
            text = await plan_text(app, uid, budget, save_budget=budget is not None, now=now)
            specs = text_embeds("📅 学习计划 / Study plan", text)
            specs += text_embeds("⏰ 每日提醒 / Daily reminder", setting, color=COLOR_OK if word else COLOR_INFO)
            await send_embeds(interaction, specs, ephemeral=True)

        await self._run(interaction, work)

    # -- /progress --------------------------------------------------------------------------------------

    @app_commands.command(name="progress", description="掌握度与学习活跃度图表 / mastery and activity chart")
    @app_commands.describe(server="看整个服务器的进度 / the whole server's progress")
    async def progress(self, interaction: discord.Interaction, server: bool = False) -> None:
        if server and interaction.guild_id is None:
            await show_error(interaction, "服务器进度只能在服务器里查看 / the server view works in a server only",
                             "去掉 server 选项查看你自己的进度 / drop the server option to see your own")
            return
        if not await self.bot.guard.admit(interaction):  # the chart costs CPU: rate-limited like the LLM commands
            return
        await defer(interaction, ephemeral=not server)

        async def work() -> None:
            app, now = self.bot.app, _now(self.bot)
            if server:
                rep = await progress_report(app, None, user=None, guild=str(interaction.guild_id), now=now)
            else:
                rep = await progress_report(app, None, user=user_key(interaction.user.id), now=now)
            try:
                png, warnings = await asyncio.to_thread(render_chart, rep.data, server=server, tz=app.settings.tz)
            except Exception:  # the numbers are still worth showing without the picture
                log.exception("progress chart failed")
                png, warnings = None, ["图表生成失败，已记录 / the chart failed; it was logged"]
            title = "📈 服务器学习进度 / Server progress" if server else "📈 学习进度 / Your progress"
            specs = text_embeds(title, rep.text, footer=" · ".join(warnings))
            chart = discord.File(io.BytesIO(png), filename=CHART_NAME) if png else None
            await send_embeds(interaction, specs, ephemeral=not server, file=chart)

        await self._run(interaction, work)


def render_chart(data: dict[str, Any], *, server: bool, tz: str) -> tuple[bytes, list[str]]:
    """The progress PNG from `progress_report(...).data`. Runs in a worker thread: matplotlib takes
    about a second, which the event loop (heartbeats, other commands) must not wait for."""
    from bot.progress_chart import progress_chart

    activity = data.get("activity") or []
    days = [date.fromisoformat(a["date"]) for a in activity]
    topics: dict[str, dict[str, Any]] = data.get("topics") or {}
    mastery = {t: float(v.get("mastery") or 0.0) for t, v in topics.items()}
    learners = {t: int(v.get("learners") or 0) for t, v in topics.items()} if server else None
    with tempfile.TemporaryDirectory(prefix="studybot-progress-") as tmp:
        chart = progress_chart(mastery, days, [int(a["right"]) for a in activity],
                               [int(a["wrong"]) for a in activity], Path(tmp) / CHART_NAME, server=server,
                               learners=learners, tz=str(data.get("tz") or tz), threshold=MASTERY_THRESHOLD)
        return chart.path.read_bytes(), list(chart.warnings)


# ---- reminder delivery -----------------------------------------------------------------------------------

class ReminderDelivery:
    """`bot.reminders.Send` for Discord: to the channel where the reminder was set (the user named,
    never pinged), else, or when that channel is gone or closed to the bot, by direct message.

    Permanent failures (no access, DMs closed) are logged and swallowed: retrying cannot help.
    Other HTTP errors propagate to `run_due_reminders`, which logs them and releases the day's
    claim so a later tick retries; nothing reaches the scheduler.
    """

    def __init__(self, channel: Callable[[int], Any], user: Callable[[int], Awaitable[Any]]) -> None:
        self.channel = channel  # channel id → messageable
        self.user = user  # user id → messageable (a DM)

    @classmethod
    def for_bot(cls, bot: discord.Client) -> ReminderDelivery:
        async def user(uid: int) -> Any:
            return bot.get_user(uid) or await bot.fetch_user(uid)

        return cls(lambda cid: bot.get_channel(cid) or bot.get_partial_messageable(cid), user)

    async def __call__(self, reminder: Reminder) -> None:
        uid = int(reminder.user_id.removeprefix("discord:"))
        text = scrub(discord_hints(reminder.text))
        if reminder.channel_id:
            try:
                await _post(self.channel(int(reminder.channel_id)), f"<@{uid}> {text}")
                return
            except (discord.Forbidden, discord.NotFound) as e:
                log.warning("reminder channel %s unusable for %s (%s); sending a direct message instead",
                            reminder.channel_id, reminder.user_id, e)
        try:
            await _post(await self.user(uid), text)
        except (discord.Forbidden, discord.NotFound) as e:
            log.warning("reminder for %s not delivered: direct messages closed (%s)", reminder.user_id, e)


async def _post(dest: Any, text: str) -> None:
    for part in split_message(text) or ["-"]:
        await dest.send(part, allowed_mentions=NO_MENTIONS)


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(RoadmapCog(bot))
