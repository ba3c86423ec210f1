"""Shared pieces of the Discord adapter: mentions off, embeds, replies, errors, permissions,
rate limits and provider choice, and the sinks the streaming renderer writes to."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from ..render import EmbedSpec, error_embed, scrub, split_message
from .data import ServerSettings, guild_scope, split_choice, user_key
from .limits import RateLimiter, TokenBudget

if TYPE_CHECKING:
    from .client import StudyBot

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
ALLOW_CACHE_S = 60.0


class UserError(Exception):
    """Something the user can fix: shown as a short error embed with what to do."""

    def __init__(self, what: str, todo: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.todo = todo


def to_embed(spec: EmbedSpec) -> discord.Embed:
    return discord.Embed.from_dict(spec.to_dict())  # type: ignore[arg-type]


def bot_of(interaction: discord.Interaction) -> StudyBot:
    return interaction.client  # type: ignore[return-value]


# ---- replies ---------------------------------------------------------------------------------------

async def defer(interaction: discord.Interaction, *, ephemeral: bool = False) -> None:
    """Acknowledge within Discord's 3 seconds; the answer follows as a followup."""
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True, ephemeral=ephemeral)


async def respond(interaction: discord.Interaction, content: str | None = None, *,
                  embed: EmbedSpec | None = None, embeds: list[EmbedSpec] | None = None,
                  file: discord.File | None = None, view: discord.ui.View | None = None,
                  ephemeral: bool = False) -> Any:
    """Send a message for this interaction: the first response, or a followup once deferred.
    Mentions are always off; the content is expected to be scrubbed already."""
    kw: dict[str, Any] = {"allowed_mentions": NO_MENTIONS, "ephemeral": ephemeral}
    if embed is not None:
        kw["embed"] = to_embed(embed)
    if embeds:
        kw["embeds"] = [to_embed(e) for e in embeds]
    if file is not None:
        kw["file"] = file
    if view is not None:
        kw["view"] = view
    if interaction.response.is_done():
        if content:
            kw["content"] = content
        return await interaction.followup.send(wait=True, **kw)
    await interaction.response.send_message(content or None, **kw)
    return None


async def respond_text(interaction: discord.Interaction, text: str, *, embed: EmbedSpec | None = None,
                       ephemeral: bool = False) -> list[Any]:
    """Long (untrusted) text in as many messages as needed; an embed rides on the last one."""
    parts = split_message(scrub(text)) or [""]
    sent = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        sent.append(await respond(interaction, part or None, embed=embed if last else None, ephemeral=ephemeral))
    return sent


async def show_error(interaction: discord.Interaction, what: str, todo: str = "", *,
                     exc: BaseException | None = None, detail: str = "") -> None:
    """A short error embed for the user; the details go to the log."""
    if exc is not None:
        log.error("%s: %s", what, exc, exc_info=exc)
    try:
        await respond(interaction, embed=error_embed(what, todo, detail=detail), ephemeral=True)
    except discord.HTTPException:
        log.warning("could not show an error to the user", exc_info=True)


# ---- permissions ------------------------------------------------------------------------------------

def is_admin(interaction: discord.Interaction) -> bool:
    p = interaction.permissions
    return interaction.guild_id is not None and bool(p.administrator or p.manage_guild)


async def require_admin(interaction: discord.Interaction) -> bool:
    if interaction.guild_id is None:
        await show_error(interaction, "这个命令只能在服务器里用 / this command works in a server only")
        return False
    if not is_admin(interaction):
        await show_error(interaction, "需要「管理服务器」权限 / you need the Manage Server permission",
                         "请服务器管理员来操作 / ask a server admin")
        return False
    return True


async def require_owner(interaction: discord.Interaction) -> bool:
    if not await interaction.client.is_owner(interaction.user):  # type: ignore[attr-defined]
        await show_error(interaction, "只有机器人的所有者可以这样做 / only the bot's owner can do this")
        return False
    return True


# ---- rate limits, budget and the provider to use ----------------------------------------------------

@dataclass
class Choice:
    provider: str | None  # None: the fallback chain
    model: str | None = None
    note: str | None = None  # shown to the user (e.g. the budget is used up)


class Guard:
    def __init__(self, bot: StudyBot) -> None:
        s = bot.app.settings
        self.bot = bot
        self.users = RateLimiter(s.rate_limit_user_per_min, clock=bot.clock)
        self.servers = RateLimiter(s.rate_limit_server_per_min, clock=bot.clock)
        self.budget = TokenBudget(bot.app.store, s.server_daily_token_budget, s.zone, clock=bot.wall_clock)
        self._allowed: dict[int, tuple[float, set[str]]] = {}  # guild → (read at, allow list)

    async def channel_allowed(self, guild_id: int | None, channel_id: int) -> bool:
        """The allow list, cached a minute: this check runs before deferring, so it must be quick."""
        if not guild_id:
            return True
        now = self.bot.clock()
        hit = self._allowed.get(guild_id)
        if hit is None or now - hit[0] > ALLOW_CACHE_S:
            chans = await ServerSettings(await self.bot.app.store()).allowed_channels(guild_id)
            hit = self._allowed[guild_id] = (now, chans)
        return not hit[1] or str(channel_id) in hit[1]

    def forget_allowed(self, guild_id: int | None) -> None:
        if guild_id:
            self._allowed.pop(guild_id, None)

    def check_rate(self, user_id: int, guild_id: int | None) -> str | None:
        """None when allowed; else a message saying how long to wait."""
        ukey = f"u:{user_id}"
        wait = self.users.hit(ukey)
        if wait is None and guild_id:
            wait = self.servers.hit(f"g:{guild_id}")
            if wait is not None:
                self.users.undo(ukey)
                return f"这个服务器的请求太多了，请 {wait:.0f} 秒后再试 / this server is busy; try again in {wait:.0f} s"
        if wait is not None:
            return f"太快啦，请 {wait:.0f} 秒后再试 / slow down: try again in {wait:.0f} s"
        return None

    async def admit(self, interaction: discord.Interaction) -> bool:
        """The fast checks before deferring (rate limit, channel allow list); False: refused and told."""
        msg = self.check_rate(interaction.user.id, interaction.guild_id)
        if msg is not None:
            await show_error(interaction, msg)
            return False
        if interaction.guild_id and interaction.channel_id:
            where = getattr(interaction.channel, "parent_id", None) or interaction.channel_id
            if not await self.channel_allowed(interaction.guild_id, where):
                await show_error(interaction, "这个频道没有开启学伴 / studybot is not enabled in this channel",
                                 "请到允许的频道使用，或请管理员 /config allow / use an allowed channel, or ask an "
                                 "admin to run /config allow")
                return False
        return True

    def validate(self, provider: str | None) -> str | None:
        if provider is None or not provider.strip():
            return None
        name, _ = split_choice(provider)
        known = self.bot.app.settings.known_providers
        if name not in known:
            raise UserError(f"未知的模型服务 / unknown provider {provider!r}",
                            f"可选 / choose one of: {', '.join(known)}")
        return provider.strip()

    async def choose(self, user_id: int, guild_id: int | None, requested: str | None = None) -> Choice:
        """The provider for this request: the one asked for, else the user's own choice, else the
        server default, else the fallback chain; the offline engine once the day's budget is used."""
        store = await self.bot.app.store()
        provider, model = split_choice(self.validate(requested))
        if provider is None:
            row = await store.user(user_key(user_id))
            if row and row.get("provider"):
                provider, model = row["provider"], row.get("model")
        if provider is None and guild_id:
            provider, model = await ServerSettings(store).model(guild_id)
        if provider is not None and provider not in self.bot.app.settings.known_providers:
            provider, model = None, None  # a stored choice that is no longer configured
        if await self.budget.exhausted(guild_scope(guild_id, user_id)):
            return Choice("offline", None, "今日模型额度已用完，由离线引擎回答 / today's token budget is used up: "
                                           "the offline engine answers")
        return Choice(provider, model)

    async def charge(self, user_id: int, guild_id: int | None, tokens: int) -> None:
        try:
            await self.budget.charge(guild_scope(guild_id, user_id), tokens)
        except Exception:  # accounting must never break an answer
            log.warning("could not record token usage", exc_info=True)


# ---- sinks for the streaming renderer ----------------------------------------------------------------

class ReplySink:
    """Answer a channel message: the first part replies to it, later parts to the previous part
    (the reply chain stays a conversation)."""

    def __init__(self, origin: discord.Message) -> None:
        self.origin = origin
        self.last: discord.Message | None = None

    async def send(self, content: str, embed: EmbedSpec | None = None) -> discord.Message:
        target = self.last or self.origin
        kw: dict[str, Any] = {"allowed_mentions": NO_MENTIONS, "mention_author": False}
        if embed is not None:
            kw["embed"] = to_embed(embed)
        msg = await target.reply(content or None, **kw)
        self.last = msg
        return msg

    async def edit(self, handle: discord.Message, content: str, embed: EmbedSpec | None = None) -> None:
        await handle.edit(content=content or None, embed=to_embed(embed) if embed else None,
                          allowed_mentions=NO_MENTIONS)


class InteractionSink:
    """Answer a deferred interaction: the first part replaces Discord's 'thinking…', later parts
    are followups."""

    def __init__(self, interaction: discord.Interaction, *, ephemeral: bool = False) -> None:
        self.interaction = interaction
        self.ephemeral = ephemeral
        self.first = True

    async def send(self, content: str, embed: EmbedSpec | None = None) -> Any:
        if self.first:
            self.first = False
            return await self.interaction.edit_original_response(
                content=content or None, embed=to_embed(embed) if embed else None, allowed_mentions=NO_MENTIONS)
        kw: dict[str, Any] = {"allowed_mentions": NO_MENTIONS, "ephemeral": self.ephemeral, "wait": True}
        if content:
            kw["content"] = content
        if embed is not None:
            kw["embed"] = to_embed(embed)
        return await self.interaction.followup.send(**kw)

    async def edit(self, handle: Any, content: str, embed: EmbedSpec | None = None) -> None:
        await handle.edit(content=content or None, embed=to_embed(embed) if embed else None,
                          allowed_mentions=NO_MENTIONS)
