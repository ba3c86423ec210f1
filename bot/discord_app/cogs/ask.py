"""`/ask`: a grounded answer from the study notes, the sources as embed fields."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.assistant import Assistant

from ...errors import ConfigError
from ...render import COLOR_INFO, EMBED_DESCRIPTION, EmbedSpec, clip, error_embed, fit_embed, scrub
from ..common import UserError, defer, respond, respond_text, show_error
from ..data import user_key
from ..limits import estimate_tokens
from .models import model_autocomplete

if TYPE_CHECKING:
    from ..client import StudyBot

log = logging.getLogger(__name__)

CONTEXT_TOKENS = 800  # the passages sent with a question, when the provider reports no usage


def sources_embed(result: Mapping[str, Any], note: str | None = None, *, answer: str = "") -> EmbedSpec:
    """The answer (when it fits) with its sources as fields and who answered in the footer."""
    spec = EmbedSpec(title="📚 回答 / Answer" if answer else "📚 出处 / Sources", description=answer,
                     color=COLOR_INFO)
    for i, s in enumerate(result.get("sources") or [], 1):
        where = " › ".join(x for x in (scrub(str(s.get("title") or "")), scrub(str(s.get("section") or ""))) if x)
        snippet = clip(scrub(str(s.get("snippet") or "")), 300)
        spec.add(clip(f"[{i}] {where or s.get('path')}", 256), f"{snippet}\n`{s.get('path', '')}`")
    if not result.get("sources"):
        spec.add("出处 / sources", "笔记中没有找到相关段落 / no passage of the notes matched")
    bits = [x for x in (result.get("provider"), result.get("model")) if x]
    footer = " · ".join([*bits, f"{result.get('latency_ms', 0):.0f} ms"])
    tools = [t.get("name") for t in result.get("tools") or [] if t.get("name")]
    if tools:
        footer += " · 🔧 " + ", ".join(dict.fromkeys(tools))
    if result.get("note"):
        footer += f" · {result['note']}"
    if note:
        footer += f" · {note}"
    spec.footer = footer
    return fit_embed(spec)


class Ask(commands.Cog):
    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot

    @app_commands.command(name="ask", description="基于学习笔记回答并给出出处 / a grounded answer from the notes, with sources")
    @app_commands.describe(question="你的问题 / your question",
                           model="只用于这个问题 / for this question only: provider or provider/model",
                           private="只有你能看到回答 / only you see the answer")
    @app_commands.autocomplete(model=model_autocomplete)
    async def ask(self, interaction: discord.Interaction, question: app_commands.Range[str, 1, 4000],
                  model: str | None = None, private: bool = False) -> None:
        guard = self.bot.guard
        try:
            guard.validate(model)
        except UserError as e:
            await show_error(interaction, e.what, e.todo)
            return
        if not await guard.admit(interaction):
            return
        await defer(interaction, ephemeral=private)
        choice = await guard.choose(interaction.user.id, interaction.guild_id, model)
        assistant = Assistant(self.bot.app)
        try:
            res = await assistant.ask(question, provider=choice.provider, model=choice.model,
                                      kb=self.bot.app.guild_kb(interaction.guild_id),
                                      user_id=user_key(interaction.user.id),
                                      guild_id=str(interaction.guild_id) if interaction.guild_id else None)
        except ConfigError as e:  # the chosen provider cannot be built (no key ...)
            await show_error(interaction, str(e), "用 /model 换一个已配置的模型 / pick a configured model with /model")
            return
        except Exception as e:  # a configuration problem or a bug: short message, details in the log
            await show_error(interaction, "这个问题没能回答 / the question could not be answered",
                             "稍后再试，或用 /model 换一个模型 / try again later, or pick another model with /model",
                             exc=e, detail=type(e).__name__)
            return
        # the reported usage is the answering call's only (tool rounds make more): never charge less
        # than the estimate of the whole exchange
        used = max(sum(res.usage.values()) if res.usage else 0, estimate_tokens(question, res.answer) + CONTEXT_TOKENS)
        await guard.charge(interaction.user.id, interaction.guild_id, used)
        doc = res.as_dict()
        if not res.ok:
            await respond(interaction, embed=error_embed(
                scrub(res.answer), "稍后再试，或用 /model 换一个模型 / try again later, or pick another model"),
                ephemeral=private)
            return
        answer = scrub(res.answer)
        if len(answer) <= EMBED_DESCRIPTION - 96:
            await respond(interaction, embed=sources_embed(doc, choice.note, answer=answer), ephemeral=private)
        else:  # long answers as text (code blocks intact), the sources after them
            await respond_text(interaction, answer, embed=sources_embed(doc, choice.note), ephemeral=private)


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(Ask(bot))
