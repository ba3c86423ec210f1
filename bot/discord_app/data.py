"""Server settings, subscriptions, conversation index and user data (no discord import).

Everything lives in the shared store: small settings in the `kv` table, digest subscriptions in
`subscriptions`; `forget_user` / `export_user` / `purge_older_than` work on the tables of every
feature through SQLAlchemy on `store.engine` (the store has no such methods yet).

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

from sqlalchemy import and_, delete, insert, or_, select, update

from bot.store import call_records, conversations, deliveries, kv, messages, subscriptions, users

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger(__name__)

DAY_S = 86400.0
PERSONA_MAX = 1500


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


# ---- privacy: forget, export, retention -------------------------------------------------------------

def _feature_tables() -> dict[str, Any]:
    """Tables of the feature packages, when they are installed (they register at import)."""
    out: dict[str, Any] = {}
    try:
        from bot.quiz import store as q

        out.update(quiz_sessions=q.quiz_sessions, quiz_answers=q.quiz_answers, quiz_scores=q.quiz_scores,
                   quiz_streaks=q.quiz_streaks, quiz_cards=q.quiz_cards, quiz_review_logs=q.quiz_review_logs,
                   quiz_prefs=q.quiz_prefs)
    except ImportError:  # pragma: no cover - the quiz package is part of the tree
        pass
    try:
        from bot import compare as c

        out.update(compare_runs=c.compare_runs, compare_votes=c.compare_votes, compare_results=c.compare_results)
    except ImportError:  # pragma: no cover
        pass
    return out


async def _ready(store: Store) -> dict[str, Any]:
    t = _feature_tables()
    await store.migrate()  # feature tables registered after the store was opened
    return t


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in result.mappings()]


async def export_user(store: Store, uid: str) -> dict[str, Any]:
    """Everything the store holds about one user, as JSON-ready data."""
    t = await _ready(store)
    out: dict[str, Any] = {"user_id": uid, "exported_at": store.clock()}
    async with store.engine.connect() as conn:
        out["profile"] = _rows(await conn.execute(select(users).where(users.c.id == uid)))
        own = _rows(await conn.execute(select(conversations).where(conversations.c.user_id == uid)))
        for c in own:
            c["messages"] = _rows(await conn.execute(
                select(messages.c.role, messages.c.content, messages.c.created_at)
                .where(messages.c.conversation_id == c["id"]).order_by(messages.c.id)))
        out["conversations"] = own
        out["messages_elsewhere"] = _rows(await conn.execute(
            select(messages.c.conversation_id, messages.c.content, messages.c.created_at)
            .where(and_(messages.c.user_id == uid,
                        messages.c.conversation_id.not_in([c["id"] for c in own] or [-1])))))
        out["call_records"] = _rows(await conn.execute(select(call_records).where(call_records.c.user_id == uid)))
        out["settings"] = _rows(await conn.execute(select(kv).where(kv.c.scope == f"user:{uid}")))
        for name in ("quiz_sessions", "quiz_answers", "quiz_scores", "quiz_streaks", "quiz_cards",
                     "quiz_review_logs", "quiz_prefs", "compare_runs", "compare_votes"):
            if name in t:
                out[name] = _rows(await conn.execute(select(t[name]).where(t[name].c.user_id == uid)))
    return out


async def forget_user(store: Store, uid: str) -> dict[str, int]:
    """Delete a user's conversations (and their turns in others' conversations, with the
    replies to them), quiz data, compare runs and votes, call records and settings.
    Returns the rows deleted per table."""
    t = await _ready(store)
    counts: dict[str, int] = {}

    async def rm(conn: Any, name: str, stmt: Any) -> None:
        counts[name] = counts.get(name, 0) + ((await conn.execute(stmt)).rowcount or 0)

    async with store.engine.begin() as conn:
        own = [r[0] for r in await conn.execute(select(conversations.c.id).where(conversations.c.user_id == uid))]
        if own:
            await rm(conn, "messages", delete(messages).where(messages.c.conversation_id.in_(own)))
            await rm(conn, "conversations", delete(conversations).where(conversations.c.id.in_(own)))
        # the user's turns in other people's conversations, and the assistant reply that follows each
        turns = (await conn.execute(select(messages.c.id, messages.c.conversation_id)
                                    .where(messages.c.user_id == uid))).all()
        doomed = {mid for mid, _ in turns}
        for mid, conv in turns:
            nxt = (await conn.execute(select(messages.c.id, messages.c.role).where(and_(
                messages.c.conversation_id == conv, messages.c.id > mid)).order_by(messages.c.id).limit(1))).first()
            if nxt is not None and nxt[1] == "assistant":
                doomed.add(nxt[0])
        if doomed:
            await rm(conn, "messages", delete(messages).where(messages.c.id.in_(sorted(doomed))))
        await rm(conn, "call_records", delete(call_records).where(call_records.c.user_id == uid))
        await rm(conn, "kv", delete(kv).where(kv.c.scope == f"user:{uid}"))
        await rm(conn, "deliveries", delete(deliveries).where(deliveries.c.target == uid))
        if "quiz_answers" in t:
            for name in ("quiz_answers", "quiz_scores", "quiz_streaks", "quiz_cards", "quiz_review_logs",
                         "quiz_prefs"):
                await rm(conn, name, delete(t[name]).where(t[name].c.user_id == uid))
            qs, qa = t["quiz_sessions"], t["quiz_answers"]
            shared = select(qa.c.session_id).where(qa.c.user_id != uid)
            await rm(conn, "quiz_sessions", delete(qs).where(and_(qs.c.user_id == uid, qs.c.id.not_in(shared))))
            # sessions other people answered in stay, without the user's name on them
            await conn.execute(update(qs).where(qs.c.user_id == uid).values(user_id="forgotten"))
        if "compare_runs" in t:
            cr, cv, cres = t["compare_runs"], t["compare_votes"], t["compare_results"]
            await rm(conn, "compare_votes", delete(cv).where(cv.c.user_id == uid))
            runs = [r[0] for r in await conn.execute(select(cr.c.id).where(cr.c.user_id == uid))]
            if runs:
                await conn.execute(delete(cv).where(cv.c.run_id.in_(runs)))
                await conn.execute(delete(cres).where(cres.c.run_id.in_(runs)))
                await rm(conn, "compare_runs", delete(cr).where(cr.c.id.in_(runs)))
        await rm(conn, "users", delete(users).where(users.c.id == uid))
    log.info("forgot %s: %s", uid, counts)
    return {k: v for k, v in counts.items() if v}


async def purge_older_than(store: Store, *, conversation_days: float | None = None,
                           call_record_days: float | None = None, now: float | None = None) -> dict[str, int]:
    """Retention: delete conversations idle for longer than `conversation_days` (with their
    messages and chain index entries) and call records older than `call_record_days`."""
    now = store.clock() if now is None else now
    counts: dict[str, int] = {}
    async with store.engine.begin() as conn:
        if conversation_days:
            cut = now - conversation_days * DAY_S
            old = [r[0] for r in await conn.execute(select(conversations.c.id).where(conversations.c.updated_at < cut))]
            if old:
                counts["messages"] = (await conn.execute(
                    delete(messages).where(messages.c.conversation_id.in_(old)))).rowcount or 0
                counts["conversations"] = (await conn.execute(
                    delete(conversations).where(conversations.c.id.in_(old)))).rowcount or 0
            counts["chatmsg"] = (await conn.execute(delete(kv).where(and_(
                kv.c.scope == "chatmsg", kv.c.updated_at < cut)))).rowcount or 0
        if call_record_days:
            cut = now - call_record_days * DAY_S
            counts["call_records"] = (await conn.execute(
                delete(call_records).where(call_records.c.started_at < cut))).rowcount or 0
        # old budget counters are of no use after their day
        counts["kv"] = (await conn.execute(delete(kv).where(and_(
            kv.c.key.like("tokens:%"), kv.c.updated_at < now - 3 * DAY_S,
            or_(kv.c.scope.like("guild:%"), kv.c.scope.like("dm:%")))))).rowcount or 0
    return {k: v for k, v in counts.items() if v}

