"""`/forget` (delete the user's data, after a confirmation) and `/export` (their data as JSON)."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.privacy import export_json, forget_user

from ..common import NO_MENTIONS, defer, respond
from ..data import user_key
from ..views import ConfirmView

if TYPE_CHECKING:
    from ..client import StudyBot

log = logging.getLogger(__name__)

CONFIRM = ("⚠️ 这会删除你的对话、测验记录、对比和调用记录，且无法恢复。确定吗？\n"
           "This deletes your conversations, quiz data, comparisons and call records for good. Sure?")


class Privacy(commands.Cog):
    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot

    @app_commands.command(name="forget", description="删除我在学伴的所有数据 / delete all my data")
    async def forget(self, interaction: discord.Interaction) -> None:
        view = ConfirmView(interaction.user.id)
        await interaction.response.send_message(CONFIRM, view=view, ephemeral=True, allowed_mentions=NO_MENTIONS)
        await view.wait()
        if view.value:
            await self.do_forget(interaction)
        elif view.value is None:
            await interaction.edit_original_response(content="已超时，未删除 / timed out; nothing deleted", view=None)

    async def do_forget(self, interaction: discord.Interaction) -> dict[str, int]:
        counts = await forget_user(await self.bot.app.store(), user_key(interaction.user.id))
        n = sum(counts.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"
        await respond(interaction, f"🗑️ 已删除 {n} 条记录 / deleted {n} records\n-# {detail}", ephemeral=True)
        return counts

    @app_commands.command(name="export", description="导出我在学伴的数据（JSON）/ export my data as JSON")
    async def export(self, interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        raw = (await export_json(await self.bot.app.store(), user_key(interaction.user.id))).encode()
        await respond(interaction, "📦 你的数据 / your data", ephemeral=True,
                      file=discord.File(io.BytesIO(raw), filename=f"studybot-{interaction.user.id}.json"))


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(Privacy(bot))
