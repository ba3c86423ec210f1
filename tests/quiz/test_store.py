"""Migration 3 upgrades an existing database in place; quiz tables and keys are as designed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from bot.quiz.store import QUIZ_VERSION, TABLES, QuizStore
from bot.store import MIGRATIONS, Store, schema_version

from .conftest import db_url


async def test_a_version_2_database_gets_the_quiz_tables_and_keeps_its_data(tmp_path: Path) -> None:
    url = db_url(tmp_path, "old.db")
    engine = create_async_engine(url)  # a database as the core alone left it
    async with engine.begin() as conn:
        await conn.run_sync(schema_version.create)
        for version, tables in MIGRATIONS:
            for t in tables:
                await conn.run_sync(t.create)
            await conn.execute(insert(schema_version).values(version=version, applied_at=0.0))
    await engine.dispose()
    store = await Store.open(url)
    try:
        await store.set_value("global", "k", "v")
        qs = await QuizStore.attach(store)
        assert await store.version() >= QUIZ_VERSION
        assert await store.migrate() == []  # nothing left to apply
        assert await store.get_value("global", "k") == "v"
        assert await qs.leaderboard(None) == []
    finally:
        await store.close()
    con = sqlite3.connect(tmp_path / "old.db")
    names = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert {t.name for t in TABLES} <= names
    assert QUIZ_VERSION in {r[0] for r in con.execute("select version from schema_version")}
    # the exactly-once key of answers is in the schema itself
    idx = " ".join(r[0] or "" for r in con.execute("select sql from sqlite_master where tbl_name='quiz_answers'"))
    assert "UNIQUE (session_id, question_id, user_id)" in idx
