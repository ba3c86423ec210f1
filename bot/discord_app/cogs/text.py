"""`/summarize` (text or a URL) and `/classify` (headlines or hot-search words)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from ...render import COLOR_INFO, EmbedSpec, clip, fit_embed, scrub
from ..common import defer, respond, show_error
from ..limits import estimate_tokens

if TYPE_CHECKING:
    from ..client import StudyBot

log = logging.getLogger(__name__)

MAX_LINES = 25  # one embed field per line


class Text(commands.Cog):
    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot

    async def _router(self, provider: str | None) -> Any:
        if provider == "offline":
            return None
        return await (self.bot.app.ensure_provider(provider) if provider else self.bot.app.router())

    @app_commands.command(name="summarize", description="摘要一段文字或一个网页 / summarise a text or a web page")
    @app_commands.describe(text="要摘要的文字 / the text", url="或者一个公开网页的链接 / or a public web page",
                           max_chars="摘要最多多少字 / summary length in characters")
    async def summarize(self, interaction: discord.Interaction, text: str | None = None, url: str | None = None,
                        max_chars: app_commands.Range[int, 50, 1000] = 200) -> None:
        if not (text or url) or (text and url):
            await show_error(interaction, "请给出 text 或 url 其中之一 / give either text or url",
                             "例如 / e.g. /summarize url:https://example.com/article")
            return
        try:
            from jobs.summarize import summarize_rows
        except ImportError:
            await show_error(interaction, "摘要功能尚未提供 / summarising is not available yet")
            return
        if not await self.bot.guard.admit(interaction):
            return
        await defer(interaction)
        title = ""
        source = text or ""
        if url:
            try:
                from bot.tools.web import FetchPolicy, decode, extract_main_text, fetch

                page = await fetch(url, FetchPolicy(allowlist=self.bot.app.settings.allowlisted_hosts))
                html = decode(page)
                if page.content_type in ("text/plain", "text/markdown"):
                    source = html
                else:
                    title, source = await asyncio.to_thread(extract_main_text, html)
                url = page.url
            except ImportError:
                await show_error(interaction, "网页摘要尚未提供 / summarising web pages is not available yet")
                return
            except Exception as e:  # refused by the network policy, unreachable, not HTML ...
                await show_error(interaction, f"无法读取这个网页 / cannot read this page: {scrub(str(e))[:300]}",
                                 "检查链接是否公开可访问 / check that the link is public", exc=None)
                log.info("summarize_url failed for %s: %s", url, e)
                return
            if not source.strip():
                await show_error(interaction, "网页中没有找到正文 / no main text found on the page")
                return
        choice = await self.bot.guard.choose(interaction.user.id, interaction.guild_id)
        try:
            router = await self._router(choice.provider)
            rows = await summarize_rows([{"text": source, "title": title or None}], choice.provider or None,
                                        max_chars, router=router)
        except Exception as e:
            await show_error(interaction, "摘要失败 / the summary failed", "稍后再试 / try again later", exc=e)
            return
        row = rows[0]
        await self.bot.guard.charge(interaction.user.id, interaction.guild_id,
                                    estimate_tokens(source[:6000], row.get("summary")))
        spec = EmbedSpec(title=clip("📝 摘要 / Summary" + (f" · {scrub(title)}" if title else ""), 256),
                         description=scrub(str(row.get("summary") or "")) or "（无法摘要 / nothing to summarise）",
                         url=url if url and url.startswith(("http://", "https://")) else None, color=COLOR_INFO,
                         footer=" · ".join(x for x in (f"方法 / method: {row.get('summary_method', '?')}", choice.note)
                                           if x))
        await respond(interaction, embed=fit_embed(spec))

    @app_commands.command(name="classify", description="给标题或热搜词分类（每行一条）/ classify headlines or topics, one per line")
    @app_commands.describe(text="每行一条，最多 25 行 / one item per line, up to 25")
    async def classify(self, interaction: discord.Interaction, text: app_commands.Range[str, 1, 4000]) -> None:
        try:
            from jobs.classify import classify_rows, get_classifier
        except ImportError:
            await show_error(interaction, "分类功能尚未提供 / classifying is not available yet")
            return
        lines = [x.strip() for x in text.replace(" | ", "\n").splitlines() if x.strip()]
        if not lines:
            await show_error(interaction, "请输入要分类的内容 / type something to classify")
            return
        if not await self.bot.guard.admit(interaction):
            return
        await defer(interaction)
        s = self.bot.app.settings
        choice = await self.bot.guard.choose(interaction.user.id, interaction.guild_id)
        try:
            router = await self._router(choice.provider)
            clf = self.bot.classifier or get_classifier(s.data_path, s.embedding_model)
            self.bot.classifier = clf  # its label prototypes are built once, then reused
            rows = await classify_rows([{"text": x} for x in lines[:MAX_LINES]], choice.provider or None,
                                       router=router, classifier=clf)
        except Exception as e:
            await show_error(interaction, "分类失败 / classifying failed", "稍后再试 / try again later", exc=e)
            return
        await self.bot.guard.charge(interaction.user.id, interaction.guild_id, estimate_tokens(*lines) * 2)
        spec = EmbedSpec(title=f"🏷️ 分类 / Labels · {len(rows)}", color=COLOR_INFO)
        for r in rows:
            conf = r.get("confidence")
            bits = [str(r.get("label") or "?"), r.get("sublabel"),
                    f"{conf:.0%}" if isinstance(conf, int | float) else None, r.get("method")]
            spec.add(clip(scrub(str(r.get("text", ""))), 256), " · ".join(str(b) for b in bits if b))
        if len(lines) > MAX_LINES:
            spec.footer = f"只分类了前 {MAX_LINES} 行 / only the first {MAX_LINES} lines"
        if choice.note:
            spec.footer = " · ".join(x for x in (spec.footer, choice.note) if x)
        await respond(interaction, embed=fit_embed(spec))


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(Text(bot))
