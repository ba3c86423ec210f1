"""The store: SQLite by default (WAL), PostgreSQL by URL, through SQLAlchemy 2 async.

Schema changes are versioned migrations applied in order at open; `schema_version` says
where a database stands, so an existing file is upgraded in place and never rebuilt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)

# --- v1: users, conversations, call records -------------------------------------------------------
users = Table(
    "users", metadata,
    Column("id", String(64), primary_key=True),  # "discord:123", "terminal:alice"
    Column("name", String(200)),
    Column("provider", String(64)),  # the user's own provider choice
    Column("model", String(128)),
    Column("created_at", Float, nullable=False),
)
conversations = Table(
    "conversations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),  # e.g. "discord:thread:123"
    Column("user_id", String(64)),
    Column("guild_id", String(64)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
messages = Table(
    "messages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", Integer, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("user_id", String(64)),
    Column("created_at", Float, nullable=False),
    Index("ix_messages_conv", "conversation_id", "id"),
)
call_records = Table(
    "call_records", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", Float, nullable=False),
    Column("provider", String(64), nullable=False),
    Column("model", String(128), nullable=False, default=""),
    Column("purpose", String(32), nullable=False, default="chat"),
    Column("ttft_ms", Float),
    Column("duration_ms", Float, nullable=False),
    Column("tokens_in", Integer),
    Column("tokens_out", Integer),
    Column("outcome", String(16), nullable=False),
    Column("error_kind", String(32)),
    Column("error_code", String(64)),
    Column("request_id", String(128)),
    Column("user_id", String(64)),
    Column("guild_id", String(64)),
    Index("ix_calls_started", "started_at"),
)

# --- v2: digests and their delivery, settings per guild ------------------------------------------
digests = Table(
    "digests", metadata,
    Column("date", String(10), primary_key=True),
    Column("payload", Text, nullable=False),  # Digest as JSON
    Column("created_at", Float, nullable=False),
)
deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # digest | reminder | review_nudge
    Column("key", String(64), nullable=False),  # the date
    Column("target", String(64), nullable=False),  # channel or user
    Column("state", String(16), nullable=False),  # claimed | sent | failed
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("kind", "key", "target", name="uq_delivery"),
)
subscriptions = Table(
    "subscriptions", metadata,
    Column("guild_id", String(64), primary_key=True),
    Column("channel_id", String(64), nullable=False),
    Column("time", String(5), nullable=False, default="08:00"),
    Column("enabled", Integer, nullable=False, default=1),
    Column("updated_at", Float, nullable=False),
)
kv = Table(
    "kv", metadata,
    Column("scope", String(64), primary_key=True),  # "guild:1", "channel:2", "global"
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

MIGRATIONS: list[tuple[int, Sequence[Table]]] = [
    (1, (users, conversations, messages, call_records)),
    (2, (digests, deliveries, subscriptions, kv)),
]

extra_migrations: list[tuple[int, Sequence[Table]]] = []  # feature packages append theirs at import


def register_migration(version: int, tables: Sequence[Table]) -> None:
    """Feature modules (quiz, compare, roadmap) register their tables with a version number."""
    for v, existing in MIGRATIONS + extra_migrations:
        if v == version:
            if {t.name for t in existing} != {t.name for t in tables}:
                raise ValueError(f"migration {version} is already taken by {[t.name for t in existing]}")
            return  # the same module imported twice
    extra_migrations.append((version, tables))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Store:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    @classmethod
    async def open(cls, url: str, *, clock: Callable[[], float] = time.time) -> Store:
        if url.startswith("sqlite"):
            engine = create_async_engine(url, connect_args={"timeout": 10})
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(url, pool_pre_ping=True)
        store = cls(engine, clock)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    # -- migrations ------------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply every migration newer than the database; return the versions applied."""
        import asyncio

        for attempt in range(6):
            try:
                async with self.engine.begin() as conn:
                    return await conn.run_sync(self._migrate_sync)
            except (IntegrityError, OperationalError):
                # another process migrated the same file at the same moment: read again and go on
                if attempt == 5:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        return []

    def _migrate_sync(self, conn: Connection) -> list[int]:
        schema_version.create(conn, checkfirst=True)
        done = {r[0] for r in conn.execute(select(schema_version.c.version))}
        applied: list[int] = []
        for version, tables in sorted(MIGRATIONS + extra_migrations, key=lambda m: m[0]):
            if version in done:
                continue
            for t in tables:
                t.create(conn, checkfirst=True)
            conn.execute(insert(schema_version).values(version=version, applied_at=self.clock()))
            applied.append(version)
        return applied

    async def version(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.max(schema_version.c.version)))).scalar() or 0

    # -- users and conversations -------------------------------------------------------------------

    async def ensure_user(self, user_id: str, name: str | None = None) -> None:
        async with self.engine.begin() as conn:
            exists = (await conn.execute(select(users.c.id).where(users.c.id == user_id))).first()
            if not exists:
                await conn.execute(insert(users).values(id=user_id, name=name, created_at=self.clock()))

    async def set_user_model(self, user_id: str, provider: str | None, model: str | None) -> None:
        await self.ensure_user(user_id)
        async with self.engine.begin() as conn:
            await conn.execute(update(users).where(users.c.id == user_id).values(provider=provider, model=model))

    async def user(self, user_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().first()
            return dict(row) if row else None

    async def conversation(self, key: str, user_id: str | None = None, guild_id: str | None = None) -> int:
        now = self.clock()
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(conversations.c.id).where(conversations.c.key == key))).first()
            if row:
                await conn.execute(update(conversations).where(conversations.c.id == row[0]).values(updated_at=now))
                return int(row[0])
            try:
                res = await conn.execute(insert(conversations).values(
                    key=key, user_id=user_id, guild_id=guild_id, created_at=now, updated_at=now))
                return int(res.inserted_primary_key[0])
            except IntegrityError:  # created concurrently
                pass
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(conversations.c.id).where(conversations.c.key == key))).scalar_one())

    async def add_message(self, conversation_id: int, role: str, content: str, user_id: str | None = None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(messages).values(conversation_id=conversation_id, role=role, content=content,
                                                       user_id=user_id, created_at=self.clock()))

    async def recent_messages(self, conversation_id: int, limit: int = 20) -> list[dict[str, str]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(messages.c.role, messages.c.content).where(messages.c.conversation_id == conversation_id)
                .order_by(messages.c.id.desc()).limit(limit))).all()
        return [{"role": r[0], "content": r[1]} for r in reversed(rows)]

    # -- call records ---------------------------------------------------------------------------------

    async def add_call_records(self, records: Sequence[Any]) -> None:
        if not records:
            return
        rows = [r.as_dict() if hasattr(r, "as_dict") else dict(r) for r in records]
        async with self.engine.begin() as conn:
            await conn.execute(insert(call_records), rows)

    async def call_records(self, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        conds = []
        if since is not None:
            conds.append(call_records.c.started_at >= since)
        if until is not None:
            conds.append(call_records.c.started_at < until)
        q = select(call_records).order_by(call_records.c.started_at)
        if conds:
            q = q.where(and_(*conds))
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings()]

    # -- exactly-once deliveries --------------------------------------------------------------------

    async def claim(self, kind: str, key: str, target: str) -> bool:
        """Write the unique key before doing the work; False when someone already did (or does) it."""
        now = self.clock()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(deliveries).values(kind=kind, key=key, target=target, state="claimed",
                                                             created_at=now, updated_at=now))
            return True
        except IntegrityError:
            return False

    async def finish_delivery(self, kind: str, key: str, target: str, ok: bool) -> None:
        """Mark sent; a failure releases the claim so a later run may try again."""
        cond = and_(deliveries.c.kind == kind, deliveries.c.key == key, deliveries.c.target == target)
        async with self.engine.begin() as conn:
            if ok:
                await conn.execute(update(deliveries).where(cond).values(state="sent", updated_at=self.clock()))
            else:
                await conn.execute(delete(deliveries).where(cond))

    async def delivered(self, kind: str, key: str, target: str) -> bool:
        cond = and_(deliveries.c.kind == kind, deliveries.c.key == key, deliveries.c.target == target)
        async with self.engine.connect() as conn:
            return (await conn.execute(select(deliveries.c.id).where(cond))).first() is not None

    # -- key/value settings ---------------------------------------------------------------------------

    async def set_value(self, scope: str, key: str, value: str | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(kv).where(and_(kv.c.scope == scope, kv.c.key == key)))
            if value is not None:
                await conn.execute(insert(kv).values(scope=scope, key=key, value=value, updated_at=self.clock()))

    async def get_value(self, scope: str, key: str) -> str | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(kv.c.value).where(and_(kv.c.scope == scope, kv.c.key == key)))).scalar()
