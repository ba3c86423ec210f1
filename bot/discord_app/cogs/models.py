"""`/model` (who answers: the user's own choice, the server default set by admins) and
`/compare` (one prompt to several providers side by side, with latency and tokens, and votes)."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from ...errors import ConfigError
from ...render import COLOR_ERROR, COLOR_OK, EMBED_TOTAL, EmbedSpec, clip, fit_embed, scrub
from ..common import NO_MENTIONS, UserError, bot_of, defer, require_admin, respond, show_error, to_embed
from ..data import ServerSettings, split_choice, user_key
from ..limits import estimate_tokens
from ..views import vote_view

if TYPE_CHECKING:
    from bot.compare import CompareRun

    from ..client import StudyBot

log = logging.getLogger(__name__)

RESET_WORDS = {"reset", "default", "clear", "默认", "重置"}


def model_options(settings: Any) -> list[str]:
    """Configured providers (the chain first) and the models their presets know."""
    from providers.presets import PRESETS

    names = list(dict.fromkeys([*settings.provider_chain, *settings.extra_provider_urls, "offline"]))
    out: list[str] = []
    for n in names:
        out.append(n)
        preset = PRESETS.get(n)
        if preset is not None:
            out += [f"{n}/{m}" for m in preset.models]
    return out


async def model_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    # autocomplete input is not enforced by Discord: the command validates what it gets
    cur = (current or "").strip().lower()
    opts = [o for o in model_options(bot_of(interaction).app.settings) if cur in o.lower()]
    return [app_commands.Choice(name=o, value=o) for o in opts[:25]]


def compare_embeds(run: CompareRun) -> tuple[list[EmbedSpec], bool]:
    """One embed per provider, all within one message's 6000 characters; True when an answer
    had to be shortened (the full text then goes in an attached file)."""
    specs: list[EmbedSpec] = []
    for i, r in enumerate(run.results):
        spec = EmbedSpec(title=clip(f"[{i + 1}] {r.provider}" + (f" · {r.model}" if r.model else ""), 256),
                         color=COLOR_ERROR if r.error else COLOR_OK)
        if r.ttft_ms is not None:
            spec.add("首字 / TTFT", f"{r.ttft_ms:.0f} ms", inline=True)
        if r.total_ms is not None:
            spec.add("总计 / total", f"{r.total_ms / 1000:.2f} s", inline=True)
        if r.tokens_in is not None or r.tokens_out is not None:
            spec.add("tokens 入/出 in/out", f"{r.tokens_in or 0} / {r.tokens_out or 0}", inline=True)
        if r.cost is not None:
            spec.add("费用 / cost", f"{r.cost:.6f} {run.currency}", inline=True)
        specs.append(spec)
    overhead = sum(s.total() for s in specs)
    share = max(100, (EMBED_TOTAL - 100 - overhead) // max(1, len(specs)))
    clipped = False
    for spec, r in zip(specs, run.results, strict=True):
        text = f"✗ {scrub(r.error)}" if r.error else (scrub(r.answer) or "（空回答 / empty answer）")
        if len(text) > share:
            clipped = True
        spec.description = clip(text, share)
    return [fit_embed(s) for s in specs], clipped


def compare_markdown(run: CompareRun) -> str:
    lines = [f"# 对比 / comparison #{run.run_id}", "", f"> {scrub(run.prompt)}", ""]
    for i, r in enumerate(run.results):
        lines += [f"## [{i + 1}] {r.provider} {r.model}", "", f"✗ {scrub(r.error)}" if r.error else scrub(r.answer), ""]
    return "\n".join(lines)


class Models(commands.Cog):
    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot

    # -- /model -------------------------------------------------------------------------------------------

    @app_commands.command(name="model", description="查看或设置默认模型 / show or set the default model")
    @app_commands.describe(name="服务商或 服务商/模型；留空查看；reset 恢复默认 / provider or provider/model; empty: "
                                "show; reset: back to default",
                           scope="我自己（默认）或本服务器（管理员）/ just me (default) or the server default (admins)")
    @app_commands.choices(scope=[app_commands.Choice(name="我自己 / me", value="me"),
                                 app_commands.Choice(name="本服务器 / server", value="server")])
    @app_commands.autocomplete(name=model_autocomplete)
    async def model(self, interaction: discord.Interaction, name: str | None = None,
                    scope: app_commands.Choice[str] | None = None) -> None:
        await defer(interaction, ephemeral=True)
        store = await self.bot.app.store()
        where = scope.value if scope else "me"
        uid = user_key(interaction.user.id)
        if name is None:
            row = await store.user(uid) or {}
            mine = "/".join(x for x in (row.get("provider"), row.get("model")) if x) or "—"
            server = "—"
            if interaction.guild_id:
                server = "/".join(x for x in await ServerSettings(store).model(interaction.guild_id) if x) or "—"
            chain = " → ".join(self.bot.app.settings.provider_chain)
            spec = EmbedSpec(title="🤖 模型 / Models", color=COLOR_OK)
            spec.add("你的选择 / yours", mine, inline=True).add("服务器默认 / server default", server, inline=True)
            spec.add("回退链 / fallback chain", chain)
            await respond(interaction, embed=fit_embed(spec), ephemeral=True)
            return
        reset = name.strip().lower() in RESET_WORDS
        provider, model = (None, None) if reset else split_choice(name)
        if not reset:
            try:
                self.bot.guard.validate(name)
            except UserError as e:
                await show_error(interaction, e.what, e.todo)
                return
        if where == "server":
            if not await require_admin(interaction):
                return
            await ServerSettings(store).set_model(interaction.guild_id, provider, model)  # type: ignore[arg-type]
            who = "本服务器默认 / server default"
        else:
            await store.set_user_model(uid, provider, model)
            who = "你的模型 / your model"
        value = "回退链 / the fallback chain" if reset else "/".join(x for x in (provider, model) if x)
        await respond(interaction, f"✅ {who} → **{value}**", ephemeral=True)

    # -- /compare --------------------------------------------------------------------------------------------

    @app_commands.command(name="compare", description="同一问题问多个模型并排比较 / one prompt to several models, side by side")
    @app_commands.describe(prompt="要比较的问题 / the prompt",
                           providers="逗号分隔，如 qwen,ernie；留空用回退链 / comma-separated, e.g. qwen,ernie "
                                     "(empty: the chain)")
    async def compare(self, interaction: discord.Interaction, prompt: app_commands.Range[str, 1, 4000],
                      providers: str | None = None) -> None:
        try:
            from bot.compare import CompareError, parse_providers, run_compare
        except ImportError:
            await show_error(interaction, "对比功能尚未提供 / comparing is not available yet")
            return
        settings = self.bot.app.settings
        try:
            if providers:
                names = parse_providers(providers)
            else:
                chain = settings.provider_chain
                names = [n for n in chain if n != "offline"][:3] or chain[:1]
            unknown = [n for n in names if n not in settings.known_providers]
            if unknown:
                raise UserError(f"未知的模型服务 / unknown provider: {', '.join(unknown)}",
                                f"可选 / choose from: {', '.join(settings.known_providers)}")
        except CompareError as e:
            await show_error(interaction, str(e))
            return
        except UserError as e:
            await show_error(interaction, e.what, e.todo)
            return
        if not await self.bot.guard.admit(interaction):
            return
        await defer(interaction)
        guard = self.bot.guard
        choice = await guard.choose(interaction.user.id, interaction.guild_id)
        if choice.provider == "offline" and choice.note:  # the day's budget is used up
            await show_error(interaction, choice.note, "明天再来比较 / compare again tomorrow")
            return
        done: list[str] = []

        async def progress(update: Any) -> None:
            if not update.done:
                return
            r = update.result
            done.append(f"{'✗' if r.error else '✓'} {r.provider}")
            if self.bot.throttle.try_acquire(str(interaction.channel_id)):
                try:
                    await interaction.edit_original_response(
                        content=f"⏳ {len(done)}/{len(names)}  " + " · ".join(done), allowed_mentions=NO_MENTIONS)
                except discord.HTTPException:
                    log.debug("compare progress edit failed", exc_info=True)

        try:
            run = await run_compare(self.bot.app, prompt, names, on_update=progress,
                                    user_id=user_key(interaction.user.id),
                                    guild_id=str(interaction.guild_id) if interaction.guild_id else None,
                                    channel_id=str(interaction.channel_id) if interaction.channel_id else None)
        except (CompareError, ConfigError) as e:
            await show_error(interaction, str(e))
            return
        tokens = sum((r.tokens_in or 0) + (r.tokens_out or 0) for r in run.results)
        await guard.charge(interaction.user.id, interaction.guild_id,
                           tokens or estimate_tokens(prompt * len(run.results), *(r.answer for r in run.results)))
        specs, clipped = compare_embeds(run)
        kw: dict[str, Any] = {"content": f"**对比 / comparison #{run.run_id}** — 投票选出最好的回答 / vote for the best "
                                         "answer", "embeds": [to_embed(s) for s in specs],
                              "allowed_mentions": NO_MENTIONS}
        if run.run_id is not None:
            kw["view"] = vote_view(run.run_id, [r.provider for r in run.results],
                                   {i for i, r in enumerate(run.results) if r.error})
        if clipped:
            data = compare_markdown(run).encode()
            kw["attachments"] = [discord.File(io.BytesIO(data), filename=f"compare-{run.run_id}.md")]
        await interaction.edit_original_response(**kw)


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(Models(bot))
