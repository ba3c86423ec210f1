"""The core chat and ask flows over a real loopback OpenAI-compatible server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.app import App, prompt_text
from bot.assistant import Assistant, trim_history
from bot.config import load_settings
from bot.knowledge import KnowledgeBase
from providers import TextDelta
from tests.stubs import openai_wire as W
from tests.stubs.http_server import Script, StubServer


@pytest.fixture
async def vllm_app(monkeypatch: pytest.MonkeyPatch, kb_data_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    replies = iter([W.text_stream(["LoRA 是", "低秩适配。"]), W.text_stream(["刚才说的是", " LoRA。"])])
    server = await StubServer(Script({"/chat/completions": lambda req: next(replies, W.text_stream(["你好！"]))})).start()
    monkeypatch.setenv("STUDYBOT_DATA_DIR", str(kb_data_dir))
    monkeypatch.setenv("STUDYBOT_DATABASE_URL", f"sqlite:///{tmp_path}/t.db")
    monkeypatch.setenv("STUDYBOT_PROVIDERS", "vllm")
    monkeypatch.setenv("VLLM_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("VLLM_MODEL", "m")
    app = App(load_settings())
    yield app, server
    await app.aclose()
    await server.close()


async def test_chat_remembers_earlier_turns_of_the_same_conversation(vllm_app) -> None:  # type: ignore[no-untyped-def]
    app, server = vllm_app
    a = Assistant(app)
    first = "".join([ev.text async for ev in a.chat("terminal:t1", "什么是LoRA？") if isinstance(ev, TextDelta)])
    assert first == "LoRA 是低秩适配。"
    second = "".join([ev.text async for ev in a.chat("terminal:t1", "刚才说的是什么？") if isinstance(ev, TextDelta)])
    assert second == "刚才说的是 LoRA。"
    msgs = server.requests[-1].json()["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"] == "什么是LoRA？" and msgs[2]["content"] == "LoRA 是低秩适配。"
    # another conversation starts fresh
    assert [ev async for ev in a.chat("terminal:t2", "你好") if isinstance(ev, TextDelta)]
    assert [m["role"] for m in server.requests[-1].json()["messages"]] == ["system", "user"]


async def test_ask_sends_numbered_passages_and_returns_sources(vllm_app) -> None:  # type: ignore[no-untyped-def]
    app, server = vllm_app
    res = await Assistant(app).ask("LoRA 的秩 r 和 alpha 有什么关系？")
    assert res.provider == "vllm" and res.answer == "LoRA 是低秩适配。"
    system = server.requests[-1].json()["messages"][0]["content"]
    assert "[1]" in system and "LoRA" in system
    assert "{passages}" not in system
    assert res.sources and res.sources[0]["path"] == "knowledge/sft_peft.md"
    assert res.attempts == [{"provider": "vllm", "outcome": "ok", "error_kind": None, "error_code": None,
                             "latency_ms": res.attempts[0]["latency_ms"]}]


async def test_ask_calls_the_model_even_when_notes_have_nothing(vllm_app) -> None:  # type: ignore[no-untyped-def]
    app, server = vllm_app
    res = await Assistant(app).ask("红烧肉怎么做才好吃")
    assert res.provider == "vllm" and res.answer
    assert "没有找到相关资料" in server.requests[-1].json()["messages"][0]["content"]
    assert res.sources == []


async def test_empty_and_huge_questions(vllm_app) -> None:  # type: ignore[no-untyped-def]
    app, server = vllm_app
    empty = await Assistant(app).ask("   ")
    assert not empty.ok and "请输入" in empty.answer and server.requests == []
    huge = await Assistant(app).ask("注意力" * 5000)
    assert huge.ok and huge.note and "4000" in huge.note
    assert len(server.requests[-1].json()["messages"][1]["content"]) == 4000


def test_history_budget_keeps_the_newest_turns() -> None:
    hist = [{"role": "user" if i % 2 == 0 else "assistant", "content": str(i) * 1000} for i in range(10)]
    kept = trim_history(hist, budget=3500)
    assert [m["content"][0] for m in kept] == ["7", "8", "9"]


async def test_chat_carries_persona_model_and_caller_to_the_request_and_records(vllm_app) -> None:  # type: ignore[no-untyped-def]
    app, server = vllm_app
    a = Assistant(app)
    events = [ev async for ev in a.chat("discord:c1", "什么是LoRA？", model="big-model", persona="用海盗的口吻回答",
                                        user_id="discord:42", guild_id="g7")]
    body = server.requests[-1].json()
    assert body["model"] == "big-model"
    system = body["messages"][0]["content"]
    assert system.startswith(prompt_text("chat")) and system.rstrip().endswith("用海盗的口吻回答")
    assert any(isinstance(ev, TextDelta) for ev in events)
    await app.flush_records()
    rec = (await (await app.store()).call_records())[-1]
    assert (rec["user_id"], rec["guild_id"], rec["model"]) == ("discord:42", "g7", "big-model")
    # no persona: the built-in prompt alone
    [ev async for ev in a.chat("discord:c2", "你好")]
    assert "海盗" not in server.requests[-1].json()["messages"][0]["content"]


async def test_ask_reports_token_usage_and_records_the_caller(vllm_app) -> None:  # type: ignore[no-untyped-def]
    app, _ = vllm_app
    res = await Assistant(app).ask("什么是LoRA？", user_id="discord:5", guild_id="g1")
    assert res.usage == {"prompt_tokens": 12, "completion_tokens": 2}
    assert res.as_dict()["usage"] == res.usage
    await app.flush_records()
    rec = (await (await app.store()).call_records())[-1]
    assert (rec["user_id"], rec["guild_id"], rec["purpose"]) == ("discord:5", "g1", "ask")


async def test_ask_searches_a_servers_own_notes_too(vllm_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app, _ = vllm_app
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "club.md").write_text("# 读书会安排\n\n## 答疑时间\n\n本群的紫藤答疑会每周三晚上八点在语音频道举行，"
                                    "由助教轮流主持。\n", encoding="utf-8")
    kb = KnowledgeBase(tmp_path / "data", scope="guild-9")
    await asyncio.to_thread(kb.index, [folder])
    question = "紫藤答疑会在什么时候举行？"
    without = await Assistant(app).ask(question, provider="offline")
    assert all(s["path"] != "club.md" for s in without.sources)
    found = await Assistant(app).ask(question, provider="offline", kb=kb)
    assert found.provider == "offline"
    assert found.sources[0]["title"] == "读书会安排" and "八点" in found.answer
    # in chat too (the offline engine, like the notes tool, searches the server's files)
    reply = "".join([ev.text async for ev in Assistant(app).chat("discord:c9", question, provider="offline", kb=kb)
                     if isinstance(ev, TextDelta)])
    assert "八点" in reply
    # the server's notes reach a model's prompt too
    await Assistant(app).ask(question, kb=kb)
    assert "紫藤答疑会" in vllm_app[1].requests[-1].json()["messages"][0]["content"]


async def test_an_offline_ask_searches_the_notes_once(vllm_app, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    app, _ = vllm_app
    kb = app.kb
    calls: list[str] = []
    real = kb.search

    async def counting(query: str, *args: object, **kw: object) -> object:
        calls.append(query)
        return await real(query, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(kb, "search", counting)
    res = await Assistant(app).ask("LoRA 的秩 r 和 alpha 有什么关系？", provider="offline")
    assert res.provider == "offline" and res.sources and "低秩" in res.answer + res.sources[0]["snippet"]
    assert calls == ["LoRA 的秩 r 和 alpha 有什么关系？"]  # the offline engine reused the search of `ask`
    await Assistant(app).ask("LoRA 的秩 r 和 alpha 有什么关系？", provider="offline")
    assert len(calls) == 2  # a new request searches afresh
