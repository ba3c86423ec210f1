"""A user's data on a real SQLite file: export, forget, retention; and the `studybot data` commands."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.app import App
from bot.config import load_settings
from bot.privacy import (
    export_command,
    export_user,
    forget_command,
    forget_user,
    purge_older_than,
    user_tables,
)
from bot.privacy import slash as privacy_slash
from bot.progress import ProgressStore
from bot.store import Store

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/d.db", clock=lambda: 1_000_000.0)
    yield s
    await s.close()


def call(user: str | None, started: float = 1_000_000.0) -> dict[str, object]:
    return {"started_at": started, "provider": "qwen", "model": "m", "purpose": "chat", "duration_ms": 5.0,
            "outcome": "ok", "user_id": user, "guild_id": "g1" if user else None}


async def seed(store: Store, uid: str) -> None:
    conv = await store.conversation(f"k:{uid}", uid)
    await store.add_message(conv, "user", f"{uid} asks", uid)
    await store.add_message(conv, "assistant", f"answer to {uid}")
    await store.set_user_model(uid, "qwen", None)
    await store.add_call_records([call(uid), call(uid)])
    progress = await ProgressStore.attach(store)
    await progress.mark(uid, "qs1-t1", NOW, guild="g1")
    await progress.set_prefs(uid, NOW, remind_at="08:30")


def test_every_feature_table_with_user_rows_is_covered() -> None:
    # a feature that adds a table with a user_id column is exported and forgotten with no change here
    assert {"call_records", "conversations", "messages", "quiz_answers", "quiz_cards", "quiz_scores",
            "roadmap_tasks", "study_prefs", "compare_runs", "compare_votes"} <= set(user_tables())


async def test_forget_removes_the_users_turns_everywhere_and_keeps_other_peoples(store: Store) -> None:
    mine = await store.conversation("discord:msg:1", "discord:alice")
    await store.add_message(mine, "user", "alice asks", "discord:alice")
    await store.add_message(mine, "assistant", "answer to alice")
    shared = await store.conversation("discord:thread:9", "discord:bob")
    await store.add_message(shared, "user", "bob asks", "discord:bob")
    await store.add_message(shared, "assistant", "answer to bob")
    await store.add_message(shared, "user", "alice joins in", "discord:alice")
    await store.add_message(shared, "assistant", "answer to alice in bob's thread")
    await store.set_user_model("discord:alice", "qwen", None)
    counts = await forget_user(store, "discord:alice")
    assert counts["conversations"] == 1 and counts["users"] == 1
    left = await store.recent_messages(shared, 10)
    assert [m["content"] for m in left] == ["bob asks", "answer to bob"]
    assert await store.user("discord:alice") is None
    assert await forget_user(store, "discord:alice") == {}  # idempotent


async def test_forget_covers_progress_reminders_and_call_records_and_spares_others(store: Store) -> None:
    await seed(store, "discord:alice")
    await seed(store, "discord:bob")
    before = await export_user(store, "discord:alice")
    assert len(before["call_records"]) == 2 and before["call_records"][0]["guild_id"] == "g1"
    assert [r["task_id"] for r in before["roadmap_tasks"]] == ["qs1-t1"]
    assert before["study_prefs"][0]["remind_at"] == "08:30"
    assert before["profile"][0]["provider"] == "qwen"
    assert before["conversations"][0]["messages"][0]["content"] == "discord:alice asks"

    counts = await forget_user(store, "discord:alice")
    assert counts == {"messages": 2, "conversations": 1, "call_records": 2, "roadmap_tasks": 1, "study_prefs": 1,
                      "users": 1}
    after = await export_user(store, "discord:alice")
    assert all(after[k] == [] for k in after if isinstance(after[k], list))
    bob = await export_user(store, "discord:bob")
    assert len(bob["call_records"]) == 2 and len(bob["roadmap_tasks"]) == 1 and bob["study_prefs"]


async def test_retention_purges_old_conversations_and_call_records(store: Store) -> None:
    old = await store.conversation("discord:msg:old", "discord:a")
    await store.add_message(old, "user", "long ago")
    await store.set_value("chatmsg", "123", "discord:msg:old")
    store.clock = lambda: 1_000_000.0 + 40 * 86400
    fresh = await store.conversation("discord:msg:new", "discord:a")
    await store.add_message(fresh, "user", "today")
    await store.add_call_records([call(None), call(None, started=1_000_000.0 + 39 * 86400)])
    counts = await purge_older_than(store, conversation_days=30, call_record_days=30)
    assert counts == {"messages": 1, "conversations": 1, "chatmsg": 1, "call_records": 1}
    assert await store.recent_messages(fresh, 5) == [{"role": "user", "content": "today"}]
    assert len(await store.call_records()) == 1
    # 0 days: keep forever
    store.clock = lambda: 1_000_000.0 + 400 * 86400
    assert await purge_older_than(store, conversation_days=0, call_record_days=0) == {}


async def test_data_commands_export_then_forget_the_terminal_user(tmp_path: Path) -> None:
    app = App(load_settings())
    try:
        await seed(await app.store(), "terminal:local")
        out = io.StringIO()
        assert await export_command(app, stdout=out) == 0
        doc = json.loads(out.getvalue())
        assert doc["user_id"] == "terminal:local" and len(doc["roadmap_tasks"]) == 1
        target = tmp_path / "me.json"
        assert await export_command(app, "terminal:local", target) == 0
        assert json.loads(target.read_text(encoding="utf-8"))["call_records"]
        assert await export_command(app, None, tmp_path / "missing" / "dir" / "me.json") == 2  # a message, no trace
        assert await forget_command(app, None, yes=False) == 2  # nothing happens without --yes
        assert (await export_user(await app.store(), "terminal:local"))["roadmap_tasks"]
        out = io.StringIO()
        assert await forget_command(app, None, yes=True, stdout=out) == 0
        assert "roadmap_tasks 1" in out.getvalue()
        assert (await export_user(await app.store(), "terminal:local"))["roadmap_tasks"] == []
    finally:
        await app.aclose()


async def test_terminal_export_and_forget_slash_commands(tmp_path: Path) -> None:
    app = App(load_settings())
    lines: list[str] = []
    try:
        await seed(await app.store(), "terminal:local")
        target = tmp_path / "mine.json"
        await privacy_slash(app, "/export", str(target), lines.append)
        assert json.loads(target.read_text(encoding="utf-8"))["study_prefs"][0]["remind_at"] == "08:30"
        await privacy_slash(app, "/export", str(tmp_path / "no" / "such" / "dir.json"), lines.append)
        assert "cannot write" in lines[-1]
        await privacy_slash(app, "/forget", "", lines.append)  # asks first
        assert "/forget yes" in lines[-1]
        assert (await export_user(await app.store(), "terminal:local"))["roadmap_tasks"]
        await privacy_slash(app, "/forget", "yes", lines.append)
        assert (await export_user(await app.store(), "terminal:local"))["roadmap_tasks"] == []
    finally:
        await app.aclose()


async def test_the_terminals_questions_are_in_its_export(kb_data_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.terminal import Terminal

    monkeypatch.setenv("STUDYBOT_DATA_DIR", str(kb_data_dir))  # the built index, shared by the session
    monkeypatch.setenv("STUDYBOT_DATABASE_URL", f"sqlite:///{tmp_path}/t.db")
    app = App(load_settings())
    try:
        term = Terminal(app, provider="offline", out=io.StringIO())
        await term.ask("什么是LoRA？")
        await term.chat("你好")
        await app.flush_records()
        records = (await export_user(await app.store(), "terminal:local"))["call_records"]
        assert {r["purpose"] for r in records} == {"ask", "chat"}
    finally:
        await app.aclose()
