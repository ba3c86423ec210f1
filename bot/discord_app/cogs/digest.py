"""`/digest now|subscribe|unsubscribe|time` (server admins): the daily digest in a channel.

The digest itself comes from `jobs.digest` (the same `Digest` as the terminal); it is posted as
embeds within Discord's limits (`bot.render.digest_embeds` + `pack_embeds`). Subscriptions live
in the store's `subscriptions` table (one channel per server); the scheduler (`jobs.scheduler`)
posts at the chosen time, once per date and channel.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from ...render import digest_embeds, pack_embeds
from ..common import defer, require_admin, respond, show_error
from ..data import subscribe, subscription

if TYPE_CHECKING:
    from ..client import StudyBot

log = logging.getLogger(__name__)

ADMIN = discord.Permissions(manage_guild=True)


class DigestCog(commands.Cog, name="Digest"):
    digest = app_commands.Group(name="digest", description="每日简报（管理员）/ the daily digest (admins)",
                                guild_only=True, default_permissions=ADMIN)

    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot

    async def _refresh_jobs(self) -> None:
        if self.bot.scheduler is None:
            return
        try:
            from jobs.scheduler import refresh_jobs

            await refresh_jobs(self.bot.app, self.bot.scheduler)
        except Exception:
            log.exception("could not update the digest schedule")

    @digest.command(name="now", description="现在生成并发布今天的简报到这里 / build today's digest and post it here")
    async def now(self, interaction: discord.Interaction) -> None:
        if not await require_admin(interaction):
            return
        await defer(interaction)
        try:
            from jobs.digest import get_or_build, today_in
        except ImportError:
            await show_error(interaction, "简报功能尚未提供 / the digest is not available yet")
            return
        s = self.bot.app.settings
        try:
            digest = await get_or_build(self.bot.app, today_in(s.zone))
        except Exception as e:
            await show_error(interaction, "简报生成失败 / the digest could not be built",
                             "稍后再试；错误已记录 / try again later; the error was logged", exc=e)
            return
        groups = pack_embeds(digest_embeds(digest.as_dict()))
        for group in groups:
            await respond(interaction, embeds=group)

    @digest.command(name="subscribe", description="每天把简报发到一个频道 / post the digest to a channel every day")
    @app_commands.describe(channel="发布的频道（默认当前频道）/ where to post (default: here)",
                           time="每天几点（HH:MM，默认 DIGEST_TIME）/ time of day HH:MM")
    async def subscribe(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None,
                        time: str | None = None) -> None:
        if not await require_admin(interaction):
            return
        if time is not None and not _valid_time(time):
            await show_error(interaction, f"时间格式不对：{time!r} / not a time of day", "用 HH:MM，例如 08:00 / use HH:MM, "
                                                                                  "e.g. 08:00")
            return
        await defer(interaction, ephemeral=True)
        target = channel.id if channel is not None else interaction.channel_id
        s = self.bot.app.settings
        row = await subscribe(await self.bot.app.store(), interaction.guild_id, target, time,  # type: ignore[arg-type]
                              default_time=s.digest_time)
        await self._refresh_jobs()
        await respond(interaction, f"✅ 每天 {row['time']}（{s.tz}）发布到 <#{row['channel_id']}> / the digest goes "
                                   f"to <#{row['channel_id']}> daily at {row['time']} ({s.tz})", ephemeral=True)

    @digest.command(name="unsubscribe", description="停止每日简报 / stop the daily digest")
    async def unsubscribe(self, interaction: discord.Interaction) -> None:
        if not await require_admin(interaction):
            return
        await defer(interaction, ephemeral=True)
        store = await self.bot.app.store()
        if await subscription(store, interaction.guild_id) is None:  # type: ignore[arg-type]
            await respond(interaction, "这个服务器没有订阅简报 / this server has no digest subscription", ephemeral=True)
            return
        await subscribe(store, interaction.guild_id, None, None, enabled=False)  # type: ignore[arg-type]
        await self._refresh_jobs()
        await respond(interaction, "✅ 已停止每日简报 / the daily digest is off", ephemeral=True)

    @digest.command(name="time", description="修改每日简报的时间 / change the digest's time of day")
    @app_commands.describe(time="HH:MM，例如 08:00 / e.g. 08:00")
    async def time(self, interaction: discord.Interaction, time: str) -> None:
        if not await require_admin(interaction):
            return
        if not _valid_time(time):
            await show_error(interaction, f"时间格式不对：{time!r} / not a time of day", "用 HH:MM，例如 08:00 / use HH:MM")
            return
        await defer(interaction, ephemeral=True)
        store = await self.bot.app.store()
        sub = await subscription(store, interaction.guild_id)  # type: ignore[arg-type]
        if sub is None:
            await show_error(interaction, "还没有订阅 / there is no subscription yet", "先用 /digest subscribe / run "
                                                                                   "/digest subscribe first")
            return
        row = await subscribe(store, interaction.guild_id, None, time.strip(), enabled=bool(sub["enabled"]))  # type: ignore[arg-type]
        await self._refresh_jobs()
        await respond(interaction, f"✅ 简报时间改为 {row['time']}（{self.bot.app.settings.tz}）/ digest time set to "
                                   f"{row['time']}", ephemeral=True)


def _valid_time(value: str) -> bool:
    from jobs.scheduler import parse_hhmm

    return parse_hhmm(value) is not None


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(DigestCog(bot))
