"""StudyBot: the discord.py `commands.Bot` of studybot.

- Mentions off by default (`AllowedMentions.none()`); every send passes it again explicitly.
- Minimal intents: guilds, guild and DM messages; message content only with
  DISCORD_MESSAGE_CONTENT (without it the bot still sees messages that mention it and DMs).
- `setup_hook` (runs once, before the gateway): cogs, persistent buttons (DynamicItem), command
  sync: to DISCORD_DEV_GUILD_ID in development; otherwise globally, only when the command
  definitions changed (a hash in the store); `/sync` (owner) forces it. Never in `on_ready`,
  which fires again on every reconnect.
- Background work started once: the digest scheduler, daily study reminders (same scheduler),
  review nudges, a health line in the log every few minutes, retention clean-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.privacy import purge_older_than

from ..render import error_embed, pack_embeds
from .common import NO_MENTIONS, Guard, respond, to_embed
from .data import ConversationIndex
from .stream import EditThrottle
from .views import DYNAMIC_ITEMS

if TYPE_CHECKING:
    from bot.app import App
    from bot.quiz.session import QuizService
    from jobs.digest import Digest

log = logging.getLogger(__name__)
health_log = logging.getLogger("bot.discord_app.health")
health_log.setLevel(logging.INFO)  # the health line shows at the default WARNING level too

HEALTH_EVERY_S = 300.0
SHUTDOWN_GRACE_S = 15.0  # answers still streaming get this long to deliver their final text
NUDGE_EVERY_S = 600.0
MAINTENANCE_EVERY_S = 3600.0


def intents_for(settings: Any) -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True  # channels, threads and permissions of the servers
    intents.guild_messages = True  # mentions and replies in servers
    intents.dm_messages = True
    intents.message_content = bool(settings.discord_message_content)  # privileged: opt in
    return intents


class StudyTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        if isinstance(error, app_commands.CheckFailure):
            what = ("这个命令只能在服务器里用 / this command works in a server only"
                    if isinstance(error, app_commands.NoPrivateMessage) else
                    "你没有权限使用这个命令 / you are not allowed to use this command")
            todo = ""
        elif isinstance(error, app_commands.TransformerError | app_commands.CommandSignatureMismatch):
            what, todo = ("参数无效 / an option is invalid", "检查输入后重试 / check the options and try again")
        else:
            original = getattr(error, "original", error)
            log.error("command /%s failed", interaction.command.qualified_name if interaction.command else "?",
                      exc_info=original)
            what, todo = ("内部错误 / internal error", "请稍后再试；问题已记录 / please try again later; it was logged")
        with contextlib.suppress(discord.HTTPException):
            await respond(interaction, embed=error_embed(what, todo), ephemeral=True)


class StudyBot(commands.Bot):
    def __init__(self, app: App, *, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=intents_for(app.settings),
                         allowed_mentions=discord.AllowedMentions.none(), help_command=None, tree_cls=StudyTree,
                         max_messages=1000)
        self.app = app
        self.clock = clock
        self.wall_clock = wall_clock
        self.throttle = EditThrottle(clock=clock)
        self.guard = Guard(self)
        self.conversations = ConversationIndex(app.store)
        self.started_at = wall_clock()
        self.active_streams = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.scheduler: Any = None
        self.classifier: Any = None  # jobs.classify.Classifier, built on the first /classify
        self._quiz: QuizService | None = None
        self._quiz_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._cogs_loaded = False

    # -- start-up -----------------------------------------------------------------------------------

    async def load_cogs(self) -> None:
        """Add every cog (idempotent): setup_hook does it, and `check_json` without connecting."""
        if self._cogs_loaded:
            return
        from .cogs import COGS

        for cog_cls in COGS:
            await self.add_cog(cog_cls(self))
        self._cogs_loaded = True

    async def setup_hook(self) -> None:
        await self.app.store()  # open and migrate now, not inside some command's 3-second window
        await self.load_cogs()
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        try:
            await self.sync_commands()
        except discord.HTTPException:
            log.exception("command sync failed; /sync can retry")
        self._spawn(self._health_loop(), "health")
        self._spawn(self._background_jobs(), "jobs")

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"studybot-{name}"))

    def commands_hash(self) -> str:
        payload = sorted((c.to_dict(self.tree) for c in self.tree.get_commands()), key=lambda c: c["name"])
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]

    async def sync_commands(self, *, force: bool = False) -> str:
        """Dev guild: copy and sync there (instant). Otherwise a global sync when the definitions
        changed since the last one (Discord rate-limits command writes)."""
        guild_id = self.app.settings.discord_dev_guild_id
        if guild_id:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.warning("synced %d commands to the development guild %s", len(synced), guild_id)
            return "guild"
        store = await self.app.store()
        key = f"commands_hash:{self.application_id}"
        digest = self.commands_hash()
        if not force and await store.get_value("global", key) == digest:
            return "unchanged"
        synced = await self.tree.sync()
        await store.set_value("global", key, digest)
        log.warning("synced %d global commands", len(synced))
        return "global"

    async def _background_jobs(self) -> None:
        await self.wait_until_ready()
        try:
            from jobs.scheduler import start_scheduler

            self.scheduler = await start_scheduler(self.app, self.post_digest)
        except Exception:
            log.exception("the digest scheduler did not start")
        try:
            from bot.reminders import start_reminders

            from .cogs.roadmap import ReminderDelivery, is_discord_user

            # on the digest's scheduler; if that one failed, the reminders' own becomes self.scheduler (closed below)
            self.scheduler = await start_reminders(self.app, ReminderDelivery.for_bot(self), scheduler=self.scheduler,
                                                   accept=is_discord_user)
        except Exception:
            log.exception("the study reminders did not start")
        self._spawn(self._every(NUDGE_EVERY_S, self.send_nudges), "nudges")
        self._spawn(self._every(MAINTENANCE_EVERY_S, self.maintenance), "maintenance")

    async def _every(self, seconds: float, fn: Callable[[], Any]) -> None:
        while not self.is_closed():
            try:
                await fn()
            except Exception:
                log.exception("background job %s failed", getattr(fn, "__name__", fn))
            await asyncio.sleep(seconds)

    async def _health_loop(self) -> None:
        while not self.is_closed():
            health_log.info(self.health_line())
            await asyncio.sleep(HEALTH_EVERY_S)

    def health_line(self) -> str:
        latency = self.latency
        lat = "-" if latency is None or not math.isfinite(latency) else f"{latency * 1000:.0f}"
        return (f"health: ready={self.is_ready()} guilds={len(self.guilds)} latency_ms={lat} "
                f"uptime_s={self.wall_clock() - self.started_at:.0f} streams={self.active_streams} "
                f"scheduler={'on' if self.scheduler is not None else 'off'}")

    # -- events -------------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: slash commands only. The chat cog listens to messages itself."""

    async def on_ready(self) -> None:
        # fires again after every reconnect: nothing to set up here
        log.warning("connected as %s to %d servers", self.user, len(self.guilds))

    async def on_resumed(self) -> None:
        log.info("gateway session resumed")

    async def on_disconnect(self) -> None:
        log.info("gateway disconnected; discord.py reconnects with backoff")

    # -- streams in flight ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def stream_slot(self) -> Any:
        """Count an answer being streamed: shutdown waits for these to deliver their final text."""
        self.active_streams += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.active_streams -= 1
            if self.active_streams == 0:
                self._idle.set()

    # -- services -----------------------------------------------------------------------------------

    async def quiz_service(self) -> QuizService:
        async with self._quiz_lock:
            if self._quiz is None:
                from bot.quiz.session import QuizService

                self._quiz = await QuizService.for_app(self.app)
            return self._quiz

    async def post_digest(self, channel_id: str, digest: Digest) -> None:
        """`jobs.digest.Send`: the digest as embeds, in as many messages as Discord's limits need."""
        from ..render import digest_embeds

        channel = self.get_channel(int(channel_id)) or self.get_partial_messageable(int(channel_id))
        for group in pack_embeds(digest_embeds(digest.as_dict())):
            await channel.send(embeds=[to_embed(e) for e in group], allowed_mentions=NO_MENTIONS)  # type: ignore[union-attr]

    async def send_nudges(self) -> None:
        """Daily review reminders (once per user and local day, claimed in the store)."""
        from .views import QuizReviewButton

        svc = await self.quiz_service()
        for nudge in await svc.nudges():
            if not nudge.user_id.startswith("discord:") or not await svc.claim_nudge(nudge):
                continue
            uid = int(nudge.user_id.removeprefix("discord:"))
            view = discord.ui.View(timeout=None)
            view.add_item(QuizReviewButton(nudge.user_id))
            ok = False
            try:
                text = f"<@{uid}> 你有 {nudge.due} 道题该复习了 / you have {nudge.due} reviews due"
                if nudge.channel_id:
                    dest: Any = self.get_partial_messageable(int(nudge.channel_id))
                else:
                    dest = await self.fetch_user(uid)
                # the one mention we make on purpose: only this user
                await dest.send(text, view=view, allowed_mentions=discord.AllowedMentions(
                    everyone=False, roles=False, users=[discord.Object(id=uid)], replied_user=False))
                ok = True
            except discord.HTTPException:
                log.warning("review nudge to %s failed", nudge.user_id, exc_info=True)
            await svc.finish_nudge(nudge, ok)

    async def maintenance(self) -> None:
        s = self.app.settings
        removed = await purge_older_than(await self.app.store(), conversation_days=s.conversation_retention_days,
                                         call_record_days=s.call_record_retention_days, now=self.wall_clock())
        if removed:
            log.info("retention clean-up: %s", removed)

    async def close(self) -> None:
        if self.active_streams:
            log.warning("waiting for %d answer(s) to finish before closing", self.active_streams)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), SHUTDOWN_GRACE_S)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                self.scheduler.shutdown(wait=False)
            self.scheduler = None
        await super().close()

