"""Server settings, subscriptions and the conversation index (no discord import).

Everything lives in the shared store: small settings in the `kv` table, digest subscriptions in
`subscriptions`. A user's data (forget, export, retention) is the core's job: bot/privacy.py.

kv layout (scope, key):
  guild:<id>    model            "provider" or "provider/model": the server default
  guild:<id>    allowed_channels JSON list of channel ids (empty: every channel)
  channel:<id>  persona          the channel's system prompt addition
  global        dm_policy        "on" | "off" (DMs with the bot; default on)
  chatmsg       <message id>     conversation key of a bot reply (reply chains survive restarts)
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from bot.assistant import PERSONA_MAX_CHARS
from bot.store import subscriptions

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger(__name__)

PERSONA_MAX = PERSONA_MAX_CHARS  # what the assistant puts into the system prompt


def user_key(user_id: int | str) -> str:
    """The store's id of a Discord user."""
    return f"discord:{user_id}"


def guild_scope(guild_id: int | str | None, user_id: int | str | None = None) -> str:
    """The budget and settings scope: the server, or the user for DMs."""
    return f"guild:{guild_id}" if guild_id else f"dm:{user_id}"


# ---- settings per server and channel ------------------------------------------------------------

class ServerSettings:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def model(self, guild_id: int | str) -> tuple[str | None, str | None]:
        return split_choice(await self.store.get_value(f"guild:{guild_id}", "model"))

    async def set_model(self, guild_id: int | str, provider: str | None, model: str | None) -> None:
        value = None if not provider else (f"{provider}/{model}" if model else provider)
        await self.store.set_value(f"guild:{guild_id}", "model", value)

    async def persona(self, channel_id: int | str) -> str | None:
        return await self.store.get_value(f"channel:{channel_id}", "persona")

    async def set_persona(self, channel_id: int | str, text: str | None) -> None:
        text = (text or "").strip()[:PERSONA_MAX] or None
        await self.store.set_value(f"channel:{channel_id}", "persona", text)

    async def allowed_channels(self, guild_id: int | str) -> set[str]:
        raw = await self.store.get_value(f"guild:{guild_id}", "allowed_channels")
        try:
            return {str(c) for c in json.loads(raw or "[]")}
        except ValueError:
            return set()

    async def set_allowed(self, guild_id: int | str, channel_id: int | str, allowed: bool) -> set[str]:
        chans = await self.allowed_channels(guild_id)
        (chans.add if allowed else chans.discard)(str(channel_id))
        await self.store.set_value(f"guild:{guild_id}", "allowed_channels",
                                   json.dumps(sorted(chans)) if chans else None)
        return chans

    async def channel_allowed(self, guild_id: int | str | None, channel_id: int | str) -> bool:
        if not guild_id:
            return True
        chans = await self.allowed_channels(guild_id)
        return not chans or str(channel_id) in chans

    async def dms_allowed(self) -> bool:
        return (await self.store.get_value("global", "dm_policy") or "on") != "off"

    async def set_dms(self, on: bool) -> None:
        await self.store.set_value("global", "dm_policy", "on" if on else "off")


def split_choice(value: str | None) -> tuple[str | None, str | None]:
    """"qwen/qwen-max" → ("qwen", "qwen-max"); "qwen" → ("qwen", None)."""
    if not value or not value.strip():
        return None, None
    provider, _, model = value.strip().partition("/")
    return provider.strip().lower() or None, model.strip() or None


# ---- digest subscriptions -------------------------------------------------------------------------

async def subscription(store: Store, guild_id: int | str) -> dict[str, Any] | None:
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(subscriptions).where(subscriptions.c.guild_id == str(guild_id)))
               ).mappings().first()
    return dict(row) if row else None


async def subscribe(store: Store, guild_id: int | str, channel_id: int | str | None = None, at: str | None = None,
                    *, enabled: bool = True, default_time: str = "08:00") -> dict[str, Any]:
    """Create or change the server's subscription (one channel per server)."""
    old = await subscription(store, guild_id)
    row = {"guild_id": str(guild_id),
           "channel_id": str(channel_id) if channel_id is not None else (old or {}).get("channel_id"),
           "time": at or (old or {}).get("time") or default_time, "enabled": int(enabled),
           "updated_at": store.clock()}
    if row["channel_id"] is None:
        raise ValueError("no channel")
    async with store.engine.begin() as conn:
        if old:
            await conn.execute(update(subscriptions).where(subscriptions.c.guild_id == str(guild_id)).values(**row))
        else:
            await conn.execute(insert(subscriptions).values(**row))
    return row


# ---- conversations of reply chains --------------------------------------------------------------

class ConversationIndex:
    """Which conversation a bot reply belongs to: replying to it continues that conversation.
    An in-memory LRU in front of the kv table (so chains survive a restart)."""

    def __init__(self, store_fn: Any, capacity: int = 5000) -> None:
        self._store_fn = store_fn
        self._mem: OrderedDict[str, str] = OrderedDict()
        self.capacity = capacity

    async def remember(self, message_id: int | str, key: str) -> None:
        mid = str(message_id)
        self._mem[mid] = key
        self._mem.move_to_end(mid)
        while len(self._mem) > self.capacity:
            self._mem.popitem(last=False)
        await (await self._store_fn()).set_value("chatmsg", mid, key)

    async def lookup(self, message_id: int | str) -> str | None:
        mid = str(message_id)
        if mid in self._mem:
            self._mem.move_to_end(mid)
            return self._mem[mid]
        key = await (await self._store_fn()).get_value("chatmsg", mid)
        if key:
            self._mem[mid] = key
        return key
