"""The core chat and ask flows over a real loopback OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import App
from bot.assistant import Assistant, trim_history
from bot.config import load_settings
from providers import TextDelta
from tests.stubs import openai_wire as W
from tests.stubs.http_server import Script, StubServer


@pytest.fixture
async def vllm_app(monkeypatch: pytest.MonkeyPatch, kb_data_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    replies = iter([W.text_stream(["LoRA 是", "低秩适配。"]), W.text_stream(["刚才说的是", " LoRA。"]),
                    W.text_stream(["你好！"])])
    server = await StubServer(Script({"/chat/completions": lambda req: next(replies)})).start()
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
