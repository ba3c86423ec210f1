"""Chat: a mention or a reply to the bot starts or continues a conversation; `/chat` sends one
message with an optional model override. Answers stream into the reply (see stream.py).

Conversations are per reply chain and per thread, never global:
  thread          discord:thread:<thread id>
  reply to bot    the conversation of the replied message (remembered per bot message)
  DM              discord:dm:<user id>
  new mention     discord:msg:<message id>
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.assistant import Assistant

from ..common import (
    NO_MENTIONS,
    InteractionSink,
    ReplySink,
    UserError,
    defer,
    show_error,
)
from ..data import ServerSettings, user_key
from ..limits import estimate_tokens
from ..stream import PLACEHOLDER, StreamOutcome, StreamRenderer, stream_reply
from .models import model_autocomplete

if TYPE_CHECKING:
    from ..client import StudyBot

log = logging.getLogger(__name__)

THREADS = (discord.ChannelType.public_thread, discord.ChannelType.private_thread, discord.ChannelType.news_thread)
ANSWERABLE = (discord.MessageType.default, discord.MessageType.reply)
HINT = "你好！直接提问吧，例如「@学伴 什么是 LoRA？」/ Hi! Ask me anything, e.g. \"@studybot what is LoRA?\""
DMS_OFF = "私信已关闭，请在服务器里找我 / DMs are turned off; talk to me in a server"
NEED_MENTION = ("看不到这条回复的内容：请在回复里 @ 我，或请管理员开启 Message Content 意图 / I cannot read this reply: "
                "mention me in it, or ask the admin to enable the Message Content intent (DISCORD_MESSAGE_CONTENT)")


def channel_of(channel: Any) -> int:
    """The channel whose settings apply: a thread's parent, else the channel itself."""
    return getattr(channel, "parent_id", None) or channel.id


class Chat(commands.Cog):
    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot

    # -- mention / reply chat ----------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        try:
            await self.handle_message(message)
        except Exception:
            log.exception("chat: a message could not be answered")

    async def addressed(self, message: discord.Message) -> bool:
        """A DM, a mention of the bot, or a reply to one of its messages."""
        me = self.bot.user
        if me is None or message.author.bot or message.type not in ANSWERABLE:
            return False
        if message.guild is None or any(u.id == me.id for u in message.mentions):
            return True
        ref = message.reference
        if ref is None or ref.message_id is None:
            return False
        author = getattr(ref.resolved, "author", None)  # the gateway resolves the replied message
        if author is not None:
            return author.id == me.id
        return await self.bot.conversations.lookup(ref.message_id) is not None

    async def conversation_key(self, message: discord.Message) -> str:
        ch = message.channel
        if getattr(ch, "type", None) in THREADS:
            return f"discord:thread:{ch.id}"
        ref = message.reference
        if ref is not None and ref.message_id is not None:
            key = await self.bot.conversations.lookup(ref.message_id)
            if key:
                return key
        if message.guild is None:
            return f"discord:dm:{message.author.id}"
        if ref is not None and ref.message_id is not None:
            return f"discord:msg:{ref.message_id}"  # a bot message from before the index: start from it
        return f"discord:msg:{message.id}"

    def text_of(self, message: discord.Message) -> str:
        """The message without the bot's mention; other mentions as readable names."""
        me = self.bot.user
        text = message.content or ""
        if me is not None:
            text = re.sub(rf"<@!?{me.id}>", "", text)
        for u in message.mentions:
            text = re.sub(rf"<@!?{u.id}>", f"@{getattr(u, 'display_name', u.name)}", text)
        return text.strip()

    async def handle_message(self, message: discord.Message) -> StreamOutcome | None:
        if not await self.addressed(message):
            return None
        settings = ServerSettings(await self.bot.app.store())
        if message.guild is None:
            if not await settings.dms_allowed():
                await message.reply(DMS_OFF, allowed_mentions=NO_MENTIONS, mention_author=False)
                return None
        elif not await self.bot.guard.channel_allowed(message.guild.id, channel_of(message.channel)):
            return None  # not enabled here: stay quiet
        text = self.text_of(message)
        if not text:
            # without the privileged intent, a reply that does not mention the bot arrives empty
            me = self.bot.user
            mentioned = me is not None and any(u.id == me.id for u in message.mentions)
            blind = message.guild is not None and not mentioned and not self.bot.intents.message_content
            await message.reply(NEED_MENTION if blind else HINT, allowed_mentions=NO_MENTIONS, mention_author=False)
            return None
        guild_id = message.guild.id if message.guild else None
        wait = self.bot.guard.check_rate(message.author.id, guild_id)
        if wait:
            await message.reply(f"⏳ {wait}", allowed_mentions=NO_MENTIONS, mention_author=False)
            return None
        persona = await settings.persona(channel_of(message.channel)) if guild_id else None
        return await self.run_chat(key=await self.conversation_key(message), text=text[:4000],
                                   user_id=message.author.id, guild_id=guild_id, channel_id=message.channel.id,
                                   sink=ReplySink(message), placeholder=True, persona=persona)

    async def run_chat(self, *, key: str, text: str, user_id: int, guild_id: int | None, channel_id: int,
                       sink: Any, placeholder: bool, requested: str | None = None,
                       persona: str | None = None) -> StreamOutcome:
        """Stream one answer into `sink` and account for it."""
        choice = await self.bot.guard.choose(user_id, guild_id, requested)
        renderer = StreamRenderer(sink, self.bot.throttle, str(channel_id),
                                  placeholder=PLACEHOLDER if placeholder else None)
        assistant = Assistant(self.bot.app)
        events = assistant.chat(key, text, provider=choice.provider, model=choice.model, persona=persona,
                                kb=self.bot.app.guild_kb(guild_id), user_id=user_key(user_id),
                                guild_id=str(guild_id) if guild_id else None)
        async with self.bot.stream_slot():
            try:
                await renderer.start()
                outcome = await stream_reply(events, renderer, note=choice.note)
            finally:
                await events.aclose()
        for handle in renderer.handles:
            if getattr(handle, "id", None) is not None:
                await self.bot.conversations.remember(handle.id, key)
        await self.bot.guard.charge(user_id, guild_id, outcome.tokens or estimate_tokens(text, outcome.text))
        return outcome

    # -- /chat ------------------------------------------------------------------------------------------

    @app_commands.command(name="chat", description="和学伴聊一句，可临时换模型 / one chat message, optionally with another model")
    @app_commands.describe(message="你想说的话 / your message",
                           model="只用于这一条：服务商或 服务商/模型 / for this message only: provider or provider/model",
                           private="只有你能看到回答 / only you see the answer")
    @app_commands.autocomplete(model=model_autocomplete)
    async def chat(self, interaction: discord.Interaction, message: app_commands.Range[str, 1, 4000],
                   model: str | None = None, private: bool = False) -> None:
        try:
            self.bot.guard.validate(model)
        except UserError as e:
            await show_error(interaction, e.what, e.todo)
            return
        if not await self.bot.guard.admit(interaction):
            return
        await defer(interaction, ephemeral=private)
        persona = None
        if interaction.guild_id and interaction.channel is not None:
            persona = await ServerSettings(await self.bot.app.store()).persona(channel_of(interaction.channel))
        await self.run_chat(key=f"discord:chat:{interaction.id}", text=message,
                            user_id=interaction.user.id, guild_id=interaction.guild_id,
                            channel_id=interaction.channel_id or 0, sink=InteractionSink(interaction, ephemeral=private),
                            placeholder=False, requested=model, persona=persona)


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(Chat(bot))
