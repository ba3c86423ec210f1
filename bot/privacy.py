"""A user's data: export it, forget it, and age everything out after the retention period.

Every adapter (Discord `/forget` `/export`, `studybot data ...` in the terminal) calls these.
Tables are found through the store's metadata: any table with a `user_id` column holds per-user
data, so a feature that registers a new table is covered without touching this module. A few
tables need more than `DELETE ... WHERE user_id = ?` and are handled by name first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import Table, and_, delete, or_, select, update

from .app import TERMINAL_USER
from .store import call_records, conversations, deliveries, kv, messages, metadata

if TYPE_CHECKING:
    from .app import App
    from .store import Store

log = logging.getLogger(__name__)

DAY_S = 86400.0
# handled by hand below (children first, rows shared with other people kept)
SPECIAL = {"conversations", "messages", "quiz_sessions", "compare_runs", "compare_results"}


def load_feature_tables() -> None:
    """Import the feature packages so their tables are in the metadata (they register at import)."""
    from . import compare, progress  # noqa: F401
    from .quiz import store  # noqa: F401


def user_tables() -> dict[str, Table]:
    """Every table with a `user_id` column, by name."""
    load_feature_tables()
    return {name: t for name, t in sorted(metadata.tables.items()) if "user_id" in t.c}


async def _ready(store: Store) -> dict[str, Table]:
    tables = user_tables()
    await store.migrate()  # feature tables registered after the store was opened
    return tables


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in result.mappings()]


async def export_user(store: Store, uid: str) -> dict[str, Any]:
    """Everything the store holds about one user, as JSON-ready data."""
    tables = await _ready(store)
    out: dict[str, Any] = {"user_id": uid, "exported_at": store.clock()}
    async with store.engine.connect() as conn:
        users = metadata.tables["users"]
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
        out["settings"] = _rows(await conn.execute(select(kv).where(kv.c.scope == f"user:{uid}")))
        for name, t in tables.items():
            if name in ("conversations", "messages"):
                continue
            out[name] = _rows(await conn.execute(select(t).where(t.c.user_id == uid)))
    return out


async def forget_user(store: Store, uid: str) -> dict[str, int]:
    """Delete a user's conversations (and their turns in others' conversations, with the
    replies to them), every per-user row of every feature, call records and settings.
    Returns the rows deleted per table."""
    tables = await _ready(store)
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
        await rm(conn, "kv", delete(kv).where(kv.c.scope == f"user:{uid}"))
        await rm(conn, "deliveries", delete(deliveries).where(deliveries.c.target == uid))
        if "compare_runs" in tables:
            cr, cres = tables["compare_runs"], metadata.tables["compare_results"]
            cv = tables["compare_votes"]
            runs = [r[0] for r in await conn.execute(select(cr.c.id).where(cr.c.user_id == uid))]
            if runs:  # other people's votes on the user's runs go with them
                await conn.execute(delete(cv).where(cv.c.run_id.in_(runs)))
                await conn.execute(delete(cres).where(cres.c.run_id.in_(runs)))
                await rm(conn, "compare_runs", delete(cr).where(cr.c.id.in_(runs)))
        for name, t in tables.items():
            if name in SPECIAL:
                continue
            await rm(conn, name, delete(t).where(t.c.user_id == uid))
        if "quiz_sessions" in tables:
            qs, qa = tables["quiz_sessions"], tables["quiz_answers"]
            shared = select(qa.c.session_id).where(qa.c.user_id != uid)
            await rm(conn, "quiz_sessions", delete(qs).where(and_(qs.c.user_id == uid, qs.c.id.not_in(shared))))
            # sessions other people answered in stay, without the user's name on them
            await conn.execute(update(qs).where(qs.c.user_id == uid).values(user_id="forgotten"))
        users = metadata.tables["users"]
        await rm(conn, "users", delete(users).where(users.c.id == uid))
    log.info("forgot %s: %s", uid, {k: v for k, v in counts.items() if v})
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


# ---- the command line -------------------------------------------------------------------------------

async def export_json(store: Store, uid: str) -> str:
    """`export_user` as the JSON document users get (Discord file, terminal, `studybot data export`)."""
    return json.dumps(await export_user(store, uid), ensure_ascii=False, indent=2, default=str) + "\n"


def _write(path: str | Path, text: str) -> None:
    Path(path).expanduser().write_text(text, encoding="utf-8")


async def export_command(app: App, user: str | None = None, out: Path | None = None,
                         stdout: TextIO | None = None) -> int:
    text = await export_json(await app.store(), user or TERMINAL_USER)
    if out is None:
        (stdout or sys.stdout).write(text)
        return 0
    try:
        await asyncio.to_thread(_write, out, text)
    except OSError as e:
        print(f"studybot: 无法写入 {out}：{e.strerror} / cannot write {out}", file=sys.stderr)
        return 2
    print(f"已导出到 {out} / exported to {out}", file=sys.stderr)
    return 0


def _deleted(counts: dict[str, int]) -> str:
    n = sum(counts.values())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"
    return f"已删除 {n} 行 / deleted {n} rows ({detail})"


async def forget_command(app: App, user: str | None = None, yes: bool = False, stdout: TextIO | None = None) -> int:
    uid = user or TERMINAL_USER
    if not yes:
        print(f"这会永久删除 {uid} 的所有数据；确认请加 --yes / this deletes all of {uid}'s data for good: "
              "add --yes to confirm", file=sys.stderr)
        return 2
    (stdout or sys.stdout).write(_deleted(await forget_user(await app.store(), uid)) + "\n")
    return 0


async def slash(app: App, cmd: str, arg: str, write: Any) -> None:
    """The terminal's `/export [file]` and `/forget yes`."""
    if cmd == "/export":
        out = arg.strip() or "studybot-export.json"
        try:
            await asyncio.to_thread(_write, out, await export_json(await app.store(), TERMINAL_USER))
        except OSError as e:
            write(f"无法写入 {out}：{e.strerror} / cannot write {out}")
            return
        write(f"已导出到 {out} / exported to {out}")
        return
    if arg.strip().lower() not in ("yes", "y", "确认"):
        write("这会永久删除你的对话、测验、进度和调用记录。确认请输入 /forget yes\n"
              "This deletes your conversations, quiz data, progress and call records for good: type /forget yes")
        return
    write(_deleted(await forget_user(await app.store(), TERMINAL_USER)))
