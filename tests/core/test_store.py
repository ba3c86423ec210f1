from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store import MIGRATIONS, Store, extra_migrations, schema_version
from providers.records import CallRecord


def all_versions() -> list[int]:
    # feature packages (quiz, compare ...) register their migrations at import
    return sorted({v for v, _ in MIGRATIONS + extra_migrations})


def url(p: Path) -> str:
    return f"sqlite+aiosqlite:///{p}"


async def test_fresh_database_gets_every_migration_and_wal(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    store = await Store.open(url(db))
    try:
        assert await store.version() == all_versions()[-1]
    finally:
        await store.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert {"users", "conversations", "messages", "call_records", "deliveries", "digests"} <= tables
    assert [r[0] for r in con.execute("select version from schema_version order by version")] == all_versions()


async def test_existing_database_is_upgraded_in_place_keeping_data(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    # a database as version 1 left it, with a conversation in it
    engine = create_async_engine(url(db))
    async with engine.begin() as conn:
        await conn.run_sync(schema_version.create)
        for t in MIGRATIONS[0][1]:
            await conn.run_sync(t.create)
        await conn.execute(insert(schema_version).values(version=1, applied_at=0.0))
    await engine.dispose()
    store = await Store.open(url(db))
    try:
        cid = await store.conversation("terminal:abc", "u1")
        await store.add_message(cid, "user", "什么是LoRA？")
    finally:
        await store.close()
    store = await Store.open(url(db))
    try:
        assert await store.version() == all_versions()[-1]
        assert await store.migrate() == []  # nothing left to apply
        cid2 = await store.conversation("terminal:abc")
        assert cid2 == cid
        assert await store.recent_messages(cid2) == [{"role": "user", "content": "什么是LoRA？"}]
    finally:
        await store.close()


async def test_claim_is_exactly_once_and_failure_releases(tmp_path: Path) -> None:
    store = await Store.open(url(tmp_path / "s.db"))
    try:
        assert await store.claim("digest", "2026-11-29", "chan1")
        assert not await store.claim("digest", "2026-11-29", "chan1")
        assert await store.claim("digest", "2026-11-29", "chan2")
        await store.finish_delivery("digest", "2026-11-29", "chan2", ok=False)
        assert await store.claim("digest", "2026-11-29", "chan2")  # a failed send may be retried
        await store.finish_delivery("digest", "2026-11-29", "chan1", ok=True)
        assert await store.delivered("digest", "2026-11-29", "chan1")
    finally:
        await store.close()


async def test_call_records_round_trip(tmp_path: Path) -> None:
    store = await Store.open(url(tmp_path / "r.db"))
    try:
        recs = [CallRecord(100.0 + i, "qwen", "qwen-plus", "ask", 120.0, 900.0, 10, 20,
                           "ok" if i % 2 else "error", None if i % 2 else "rate_limited") for i in range(6)]
        await store.add_call_records(recs)
        rows = await store.call_records(since=102.0)
        assert [r["started_at"] for r in rows] == [102.0, 103.0, 104.0, 105.0]
        assert {r["error_kind"] for r in rows} == {None, "rate_limited"}
    finally:
        await store.close()


async def test_conversation_history_is_per_conversation(tmp_path: Path) -> None:
    store = await Store.open(url(tmp_path / "c.db"))
    try:
        a = await store.conversation("discord:thread:1")
        b = await store.conversation("discord:thread:2")
        await store.add_message(a, "user", "A1")
        await store.add_message(b, "user", "B1")
        await store.add_message(a, "assistant", "A2")
        assert [m["content"] for m in await store.recent_messages(a)] == ["A1", "A2"]
        assert [m["content"] for m in await store.recent_messages(b)] == ["B1"]
        assert [m["content"] for m in await store.recent_messages(a, limit=1)] == ["A2"]
    finally:
        await store.close()


def test_two_processes_opening_a_fresh_database_at_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "race.db"
    code = ("import asyncio, sys; from bot.store import Store; import bot.quiz.store, bot.compare, bot.progress\n"
            "async def main():\n"
            f"    s = await Store.open('sqlite+aiosqlite:///{db}')\n"
            "    print(await s.version()); await s.close()\n"
            "asyncio.run(main())")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1  # all see the same, latest version
