"""Server administration and general commands: `/config ...` (persona, channel allow list, DMs),
`/kb add` (the server's own notes), `/sync` (owner), `/stats`, `/help`."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from ...render import COLOR_INFO, EmbedSpec, clip, fit_embed, scrub
from ..common import defer, require_admin, require_owner, respond, show_error
from ..data import PERSONA_MAX, ServerSettings

if TYPE_CHECKING:
    from ..client import StudyBot

log = logging.getLogger(__name__)

ADMIN = discord.Permissions(manage_guild=True)
KB_SUFFIXES = {".md", ".mdx", ".markdown", ".txt", ".html", ".htm"}
KB_MAX_BYTES = 2_000_000
_SAFE_NAME = re.compile(r"[^\w.\-]+")

HELP = [
    ("💬 聊天 / chat", "@学伴 提问，或回复它的消息继续对话；线程里就是一个对话。/chat 可临时换模型\n"
                      "mention me or reply to my message to continue; a thread is one conversation"),
    ("/ask", "基于学习笔记回答并给出出处 / grounded answer with sources"),
    ("/model", "查看或设置你的模型（管理员可设服务器默认）/ your model, or the server default (admins)"),
    ("/compare", "同一问题问多个模型，投票 / several models side by side, with votes"),
    ("/summarize · /classify", "摘要文字或网页；给标题分类 / summarise text or a page; label headlines"),
    ("/quiz start · review · stats · leaderboard", "测验、复习错题、统计、排行榜 / quizzes with spaced repetition"),
    ("/digest now · subscribe · unsubscribe · time", "每日简报（管理员）/ the daily digest (admins)"),
    ("/kb add · /config", "服务器知识库与设置（管理员）/ server notes and settings (admins)"),
    ("/roadmap · /plan · /progress", "学习路线与任务、7 天计划与每日提醒、进度图表 / the roadmap and its tasks, "
                                     "a week plan with a daily reminder, a progress chart"),
    ("/stats", "模型调用统计 / model call statistics"),
    ("/forget · /export", "删除或导出你的数据 / delete or export your data"),
]


class Admin(commands.Cog):
    config = app_commands.Group(name="config", description="服务器设置（管理员）/ server settings (admins)",
                                guild_only=True, default_permissions=ADMIN)
    kb = app_commands.Group(name="kb", description="服务器知识库（管理员）/ the server's knowledge base (admins)",
                            guild_only=True, default_permissions=ADMIN)

    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot

    async def _settings(self) -> ServerSettings:
        return ServerSettings(await self.bot.app.store())

    # -- /config -------------------------------------------------------------------------------------

    @config.command(name="persona", description="本频道的人设（系统提示）；留空清除 / this channel's persona; empty clears it")
    @app_commands.describe(text="例如：用简单的语言回答初学者 / e.g. answer beginners in simple words")
    async def persona(self, interaction: discord.Interaction,
                      text: app_commands.Range[str, 0, PERSONA_MAX] | None = None) -> None:
        if not await require_admin(interaction):
            return
        await defer(interaction, ephemeral=True)
        chan = getattr(interaction.channel, "parent_id", None) or interaction.channel_id
        await (await self._settings()).set_persona(chan, text)  # type: ignore[arg-type]
        msg = (f"✅ 本频道人设已设置 / persona set:\n> {clip(scrub(text), 500)}" if text and text.strip()
               else "✅ 本频道人设已清除 / persona cleared")
        await respond(interaction, msg, ephemeral=True)

    @config.command(name="allow", description="允许学伴在一个频道聊天 / enable studybot in a channel")
    async def allow(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        await self._set_allowed(interaction, channel, True)

    @config.command(name="deny", description="从允许列表移除频道 / remove a channel from the allow list")
    async def deny(self, interaction: discord.Interaction, channel: discord.TextChannel | None = None) -> None:
        await self._set_allowed(interaction, channel, False)

    async def _set_allowed(self, interaction: discord.Interaction, channel: discord.TextChannel | None,
                           allowed: bool) -> None:
        if not await require_admin(interaction):
            return
        await defer(interaction, ephemeral=True)
        target = channel.id if channel is not None else interaction.channel_id
        chans = await (await self._settings()).set_allowed(interaction.guild_id, target, allowed)  # type: ignore[arg-type]
        self.bot.guard.forget_allowed(interaction.guild_id)
        await respond(interaction, _channels_text(chans), ephemeral=True)

    @config.command(name="channels", description="查看允许的频道 / show the allowed channels")
    async def channels(self, interaction: discord.Interaction) -> None:
        if not await require_admin(interaction):
            return
        await defer(interaction, ephemeral=True)
        chans = await (await self._settings()).allowed_channels(interaction.guild_id)  # type: ignore[arg-type]
        await respond(interaction, _channels_text(chans), ephemeral=True)

    @config.command(name="dms", description="是否接受私信聊天（机器人所有者）/ allow chat in DMs (bot owner)")
    async def dms(self, interaction: discord.Interaction, enabled: bool) -> None:
        await defer(interaction, ephemeral=True)
        if not await require_owner(interaction):
            return
        await (await self._settings()).set_dms(enabled)
        await respond(interaction, f"✅ 私信聊天 / DM chat: {'开 on' if enabled else '关 off'}", ephemeral=True)

    # -- /kb add ---------------------------------------------------------------------------------------

    @kb.command(name="add", description="把文件加入服务器知识库（md/mdx/txt/html）/ add files to the server's notes")
    @app_commands.describe(file="Markdown、MDX、文本或 HTML 文件 / a Markdown, MDX, text or HTML file")
    async def kb_add(self, interaction: discord.Interaction, file: discord.Attachment,
                     file2: discord.Attachment | None = None, file3: discord.Attachment | None = None) -> None:
        if not await require_admin(interaction):
            return
        files = [f for f in (file, file2, file3) if f is not None]
        bad = [f.filename for f in files if _suffix(f.filename) not in KB_SUFFIXES]
        big = [f.filename for f in files if f.size > KB_MAX_BYTES]
        if bad or big:
            what = (f"不支持的文件 / unsupported: {', '.join(bad)}" if bad else
                    f"文件太大 / too large (> {KB_MAX_BYTES // 1_000_000} MB): {', '.join(big)}")
            await show_error(interaction, scrub(what), "支持 / supported: " + ", ".join(sorted(KB_SUFFIXES)))
            return
        await defer(interaction, ephemeral=True)
        s = self.bot.app.settings
        folder = s.data_path / "guild_kb" / str(interaction.guild_id)
        folder.mkdir(parents=True, exist_ok=True)
        saved = []
        for f in files:
            name = _SAFE_NAME.sub("_", f.filename).strip("._") or "file"
            path = folder / (name if _suffix(name) in KB_SUFFIXES else f"{name}.txt")
            await f.save(path)
            saved.append(path.name)
        try:
            kb = self.bot.app.scoped_kb(f"guild-{interaction.guild_id}")
            index = await asyncio.to_thread(kb.index, [folder])  # embedding is CPU work: off the event loop
        except Exception as e:
            await show_error(interaction, "索引失败 / indexing failed", "检查文件内容后重试 / check the files and retry",
                             exc=e)
            return
        await respond(interaction, f"✅ 已加入 / added: {', '.join(saved)}\n-# 知识库共 {len(index)} 段 / the server's "
                                   f"index has {len(index)} passages", ephemeral=True)

    # -- /sync (owner) -------------------------------------------------------------------------------------

    @app_commands.command(name="sync", description="同步斜杠命令（机器人所有者）/ sync slash commands (bot owner)")
    @app_commands.describe(here="只同步到这个服务器（立即生效）/ sync to this server only (instant)")
    async def sync(self, interaction: discord.Interaction, here: bool = False) -> None:
        await defer(interaction, ephemeral=True)  # the owner check may ask Discord who the owner is
        if not await require_owner(interaction):
            return
        if here and interaction.guild_id:
            guild = discord.Object(id=interaction.guild_id)
            self.bot.tree.copy_global_to(guild=guild)
            synced = await self.bot.tree.sync(guild=guild)
            await respond(interaction, f"✅ 已同步 {len(synced)} 个命令到本服务器 / synced {len(synced)} commands here",
                          ephemeral=True)
            return
        synced = await self.bot.tree.sync()
        store = await self.bot.app.store()
        await store.set_value("global", f"commands_hash:{self.bot.application_id}", self.bot.commands_hash())
        await respond(interaction, f"✅ 已全局同步 {len(synced)} 个命令（可能需要一小时生效）/ synced {len(synced)} global "
                                   "commands (may take up to an hour)", ephemeral=True)

    # -- /stats, /help ---------------------------------------------------------------------------------------

    @app_commands.command(name="stats", description="模型调用统计 / model call statistics")
    @app_commands.describe(days="最近几天 / the last N days")
    async def stats(self, interaction: discord.Interaction, days: app_commands.Range[int, 1, 365] = 7) -> None:
        try:
            from bot.prices import prices_for
            from bot.stats import summarize
        except ImportError:
            await show_error(interaction, "统计功能尚未提供 / statistics are not available yet")
            return
        await defer(interaction)
        s = self.bot.app.settings
        doc = await summarize(await self.bot.app.store(), days=days, prices=prices_for(s), tz=s.tz,
                              now=self.bot.wall_clock)
        await respond(interaction, embed=stats_embed(doc))

    @app_commands.command(name="help", description="学伴能做什么 / what studybot can do")
    async def help(self, interaction: discord.Interaction) -> None:
        spec = EmbedSpec(title="📖 学伴 studybot", color=COLOR_INFO,
                         description="学习大语言模型的伙伴 / a study companion for learning LLMs")
        for name, value in HELP:
            spec.add(name, value)
        await respond(interaction, embed=fit_embed(spec), ephemeral=True)


def stats_embed(doc: dict) -> EmbedSpec:  # type: ignore[type-arg]
    t = doc["total"]
    rate = "-" if t.get("success_rate") is None else f"{t['success_rate']:.1%}"
    spec = EmbedSpec(title=f"📈 调用统计 / Call stats · {doc.get('days')} 天 days", color=COLOR_INFO,
                     description=f"{t['calls']} 次调用，成功率 {rate} / {t['calls']} calls, success {rate}\n"
                                 f"-# {doc.get('since_local')} — {doc.get('until_local')} ({doc.get('tz')})")
    for m in doc.get("models") or []:
        ttft = m["ttft_ms"]
        total = m["total_ms"]
        sr = "-" if m.get("success_rate") is None else f"{m['success_rate']:.0%}"
        errs = ", ".join(f"{k}×{n}" for k, n in (m.get("errors_by_kind") or {}).items()) or "-"
        value = (f"调用 calls {m['calls']} · 成功 ok {sr}\nTTFT p50/p95 {_ms(ttft.get('p50'))}/{_ms(ttft.get('p95'))} ms\n"
                 f"总计 total p50 {_ms(total.get('p50'))} ms · tokens {m['tokens_in']}/{m['tokens_out']}\n错误 errors: {errs}")
        spec.add(f"{m['provider']}/{m.get('model') or '-'}", value, inline=True)
    if not doc.get("models"):
        spec.add("—", "这段时间没有调用记录 / no calls in this window")
    return fit_embed(spec)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot >= 0 else ""


def _channels_text(chans: set[str]) -> str:
    if not chans:
        return "允许列表为空：所有频道都可以聊天 / the allow list is empty: every channel is enabled"
    return "允许的频道 / allowed channels: " + " ".join(f"<#{c}>" for c in sorted(chans))


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(Admin(bot))
