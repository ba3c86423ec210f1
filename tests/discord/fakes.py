"""Fakes at the Discord boundary only: interactions, messages, channels, users.

Spec'd in the python-discord style: every call is checked against the signature of the real
discord.py method it stands for (an unknown keyword fails the test), every attribute the fakes
expose exists on the real class, and each call is recorded in order in one shared `Log`.
Everything behind the boundary (App, router, providers over loopback HTTP, SQLite, embeddings)
is real.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass, field
from typing import Any

import discord

_ids = itertools.count(900_000_000_000_000_001)


def next_id() -> int:
    return next(_ids)


def spec_check(real: Any, *args: Any, **kwargs: Any) -> None:
    """Raise TypeError when the real method would not accept these arguments."""
    inspect.signature(real).bind(None, *args, **kwargs)


@dataclass
class Call:
    what: str  # defer | send_message | followup | edit_original | send | reply | edit | edit_message
    kwargs: dict[str, Any]
    target: Any = None  # the message or channel concerned

    @property
    def content(self) -> str:
        return self.kwargs.get("content") or ""

    @property
    def embeds(self) -> list[discord.Embed]:
        if self.kwargs.get("embed") is not None:
            return [self.kwargs["embed"]]
        return list(self.kwargs.get("embeds") or [])

    @property
    def mentions(self) -> dict[str, Any] | None:
        am = self.kwargs.get("allowed_mentions")
        return am.to_dict() if am is not None else None


@dataclass
class Log:
    calls: list[Call] = field(default_factory=list)

    def add(self, what: str, target: Any = None, **kwargs: Any) -> None:
        self.calls.append(Call(what, kwargs, target))

    def of(self, *kinds: str) -> list[Call]:
        return [c for c in self.calls if c.what in kinds]

    @property
    def kinds(self) -> list[str]:
        return [c.what for c in self.calls]

    def texts(self) -> list[str]:
        """Every content and embed text that was sent or edited, in order."""
        out = []
        for c in self.calls:
            if c.content:
                out.append(c.content)
            for e in c.embeds:
                d = e.to_dict()
                out.append(" ".join([d.get("title", ""), d.get("description", ""),
                                     *(f["name"] + " " + f["value"] for f in d.get("fields", [])),
                                     (d.get("footer") or {}).get("text", "")]))
        return out


class FakeUser:
    def __init__(self, id: int | None = None, *, name: str = "alice", bot: bool = False) -> None:
        self.id = id or next_id()
        self.name = name
        self.display_name = name.title()
        self.global_name = name.title()
        self.bot = bot
        self.mention = f"<@{self.id}>"


class FakeGuild:
    def __init__(self, id: int | None = None) -> None:
        self.id = id or next_id()
        self.name = "study server"


class FakeMessage:
    """A message the bot sent (or received): edits and replies are recorded in the log."""

    def __init__(self, log: Log, *, content: str | None = "", channel: FakeChannel | None = None,
                 author: FakeUser | None = None, guild: FakeGuild | None = None, mentions: list[FakeUser] | None = None,
                 reference: discord.MessageReference | None = None, id: int | None = None) -> None:
        self.log = log
        self.id = id or next_id()
        self.content = content or ""
        self.channel = channel
        self.author = author
        self.guild = guild
        self.mentions = mentions or []
        self.reference = reference
        self.type = discord.MessageType.reply if reference else discord.MessageType.default
        self.embeds: list[discord.Embed] = []
        self.edits: list[dict[str, Any]] = []

    async def edit(self, **kwargs: Any) -> FakeMessage:
        spec_check(discord.Message.edit, **kwargs)
        self.log.add("edit", self, **kwargs)
        self.edits.append(kwargs)
        if "content" in kwargs:
            self.content = kwargs["content"] or ""
        return self

    async def reply(self, content: str | None = None, **kwargs: Any) -> FakeMessage:
        spec_check(discord.abc.Messageable.send, content, **kwargs)
        self.log.add("reply", self, content=content, **kwargs)
        msg = FakeMessage(self.log, content=content, channel=self.channel, guild=self.guild)
        if self.channel is not None:
            self.channel.sent.append(msg)
        return msg


class FakeChannel:
    def __init__(self, log: Log, id: int | None = None, *, kind: discord.ChannelType = discord.ChannelType.text,
                 parent_id: int | None = None) -> None:
        self.log = log
        self.id = id or next_id()
        self.type = kind
        self.parent_id = parent_id
        self.sent: list[FakeMessage] = []

    async def send(self, content: str | None = None, **kwargs: Any) -> FakeMessage:
        spec_check(discord.abc.Messageable.send, content, **kwargs)
        self.log.add("send", self, content=content, **kwargs)
        msg = FakeMessage(self.log, content=content, channel=self)
        self.sent.append(msg)
        return msg


class FakeResponse:
    """discord.InteractionResponse"""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._done = False

    def is_done(self) -> bool:
        return self._done

    def _respond(self) -> None:
        if self._done:
            raise discord.InteractionResponded(None)  # type: ignore[arg-type]
        self._done = True

    async def defer(self, **kwargs: Any) -> None:
        spec_check(discord.InteractionResponse.defer, **kwargs)
        self._respond()
        self.log.add("defer", **kwargs)

    async def send_message(self, content: str | None = None, **kwargs: Any) -> None:
        spec_check(discord.InteractionResponse.send_message, content, **kwargs)
        self._respond()
        self.log.add("send_message", content=content, **kwargs)

    async def edit_message(self, **kwargs: Any) -> None:
        spec_check(discord.InteractionResponse.edit_message, **kwargs)
        self._respond()
        self.log.add("edit_message", **kwargs)


class FakeFollowup:
    """discord.Webhook (interaction.followup)"""

    def __init__(self, log: Log, channel: FakeChannel | None) -> None:
        self.log = log
        self.channel = channel

    async def send(self, content: str | None = None, **kwargs: Any) -> FakeMessage:
        spec_check(discord.Webhook.send, content, **kwargs)
        self.log.add("followup", content=content, **kwargs)
        return FakeMessage(self.log, content=content, channel=self.channel)


class FakeInteraction:
    """discord.Interaction for an application command (or a component, with `message`)."""

    def __init__(self, client: Any, log: Log | None = None, *, user: FakeUser | None = None,
                 guild: FakeGuild | None = None, channel: FakeChannel | None = None,
                 permissions: discord.Permissions | None = None, dm: bool = False,
                 message: FakeMessage | None = None) -> None:
        self.log = log or Log()
        self.client = client
        self.id = next_id()
        self.user = user or FakeUser()
        self.guild = None if dm else (guild or FakeGuild())
        self.guild_id = self.guild.id if self.guild else None
        self.channel = channel or FakeChannel(self.log, kind=discord.ChannelType.private if dm else
                                              discord.ChannelType.text)
        self.channel_id = self.channel.id
        self.permissions = permissions or discord.Permissions.none()
        self.response = FakeResponse(self.log)
        self.followup = FakeFollowup(self.log, self.channel)
        self.message = message
        self.original = FakeMessage(self.log, channel=self.channel)
        self.type = discord.InteractionType.component if message else discord.InteractionType.application_command

    async def edit_original_response(self, **kwargs: Any) -> FakeMessage:
        spec_check(discord.Interaction.edit_original_response, **kwargs)
        if not self.response.is_done():
            raise discord.NotFound.__new__(discord.NotFound)  # Discord: unknown webhook before a response
        self.log.add("edit_original", self.original, **kwargs)
        if "content" in kwargs:
            self.original.content = kwargs["content"] or ""
        return self.original

    async def original_response(self) -> FakeMessage:
        return self.original


FAKE_ATTRS = {
    discord.Interaction: ("client", "id", "user", "guild", "guild_id", "channel", "channel_id", "permissions",
                          "response", "followup", "message", "type", "edit_original_response", "original_response"),
    discord.InteractionResponse: ("is_done", "defer", "send_message", "edit_message"),
    discord.Webhook: ("send",),
    discord.Message: ("id", "content", "channel", "author", "guild", "mentions", "reference", "type", "embeds",
                      "edit", "reply"),
    discord.TextChannel: ("id", "type", "send"),
    discord.Thread: ("id", "type", "parent_id", "send"),
    discord.User: ("id", "name", "display_name", "global_name", "bot", "mention"),
}
