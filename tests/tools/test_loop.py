"""The tool loop inside Assistant.ask / Assistant.chat, against a real loopback OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bot.app import App
from bot.assistant import Assistant
from bot.config import load_settings
from bot.knowledge import KnowledgeBase
from bot.tools.builtin import set_registry
from bot.tools.loop import ROUND_LIMIT_NOTE, ToolNote
from bot.tools.registry import Registry, Tool
from providers import Final, TextDelta
from tests.stubs import openai_wire as W
from tests.stubs.http_server import Reply, Request, StubServer


def calls_stream(calls: list[tuple[str, str]]) -> Reply:
    """Several tool calls in one streamed reply (index 0, 1, ...), arguments in two fragments each."""
    objs: list[dict | str] = []
    for i, (name, args) in enumerate(calls):
        half = len(args) // 2
        objs.append(W.chunk_obj(None, tool_calls=[{"index": i, "id": f"call_{i}", "type": "function",
                                                   "function": {"name": name, "arguments": args[:half]}}]))
        objs.append(W.chunk_obj(None, tool_calls=[{"index": i, "function": {"arguments": args[half:]}}]))
    objs.append(W.chunk_obj(None, finish="tool_calls"))
    return Reply(200, headers=W.SSE, chunks=W.sse(objs))


class Vllm:
    """A scripted vLLM-like server: `replies` is a list, or a function of the request number."""

    def __init__(self, replies: list[Reply] | Callable[[int], Reply]) -> None:
        self.replies = replies
        self.server = StubServer(self._route)

    def _route(self, req: Request) -> Reply:
        n = len(self.bodies) - 1
        if callable(self.replies):
            return self.replies(n)
        return self.replies[min(n, len(self.replies) - 1)]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.server.requests]


@pytest.fixture(scope="module")
def shared_kb(kb_data_dir: Path) -> KnowledgeBase:
    """One loaded knowledge base for the module: loading the index is the slow part of an App."""
    return KnowledgeBase(kb_data_dir)


@pytest.fixture
async def make_app(monkeypatch: pytest.MonkeyPatch, kb_data_dir: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                   shared_kb: KnowledgeBase):
    """make(replies, **env) -> (App on a vLLM stub, the stub); `{url}` in env values is the stub's URL."""
    made: list[tuple[App, Vllm]] = []

    async def make(replies: list[Reply] | Callable[[int], Reply], **env: str) -> tuple[App, Vllm]:
        stub = Vllm(replies)
        await stub.server.start()
        base = {"STUDYBOT_DATA_DIR": str(kb_data_dir), "STUDYBOT_DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
                "STUDYBOT_PROVIDERS": "vllm", "VLLM_BASE_URL": "{url}/v1", "VLLM_MODEL": "m"}
        for k, v in {**base, **env}.items():
            monkeypatch.setenv(k, v.replace("{url}", stub.server.url))
        app = App(load_settings())
        app._kb = shared_kb  # test shortcut: the same notes, loaded once
        made.append((app, stub))
        return app, stub

    yield make
    for app, stub in made:
        await app.aclose()
        await stub.server.close()


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(m["content"]) for m in body["messages"] if m["role"] == "tool"]


async def test_a_model_that_calls_tools_forever_is_stopped_by_the_round_limit(make_app) -> None:  # type: ignore[no-untyped-def]
    app, stub = await make_app(lambda n: W.tool_call_stream("calculator", '{"expression": "1+1"}', f"c{n}"),
                               TOOL_MAX_ROUNDS="3")
    res = await Assistant(app).ask("一直算下去")
    assert len(stub.bodies) == 3 + 1  # TOOL_MAX_ROUNDS rounds with tools, then once without
    assert all("tools" in b for b in stub.bodies[:3]) and "tools" not in stub.bodies[3]
    assert res.ok and res.answer == ROUND_LIMIT_NOTE
    assert [t["name"] for t in res.tools] == ["calculator"] * 3
    assert len(tool_messages(stub.bodies[3])) == 3


async def test_default_round_limit_is_four(make_app) -> None:  # type: ignore[no-untyped-def]
    app, stub = await make_app(lambda n: W.tool_call_stream("now", "{}", f"c{n}"))
    await Assistant(app).ask("现在几点")
    assert len(stub.bodies) == 4 + 1


async def test_malformed_arguments_go_back_to_the_model_as_tool_errors(make_app) -> None:  # type: ignore[no-untyped-def]
    bad = [("calculator", '{"expression": '), ("calculator", '{"expression": 5}'), ("weather", '{"city": "北京"}'),
           ("calculator", '{"expression": "x+1"}'), ("calculator", '{"expression": "6*7"}')]
    app, stub = await make_app([calls_stream(bad), W.text_stream(["好的，", "6*7=42。"])])
    res = await Assistant(app).ask("算一下")
    assert res.ok and res.answer == "好的，6*7=42。"
    results = tool_messages(stub.bodies[1])
    assert [r["ok"] for r in results] == [False, False, False, False, True]
    assert "not valid JSON" in results[0]["error"] and "expression" in results[1]["error"]
    assert "unknown tool" in results[2]["error"] and "calculator" in results[2]["hint"]
    assert "names are not allowed" in results[3]["error"] and results[4]["data"]["result"] == 42
    ids = [m["tool_call_id"] for m in stub.bodies[1]["messages"] if m["role"] == "tool"]
    assert ids == ["call_0", "call_1", "call_2", "call_3", "call_4"]
    echoed = stub.bodies[1]["messages"][-6]["tool_calls"]
    assert echoed[0]["function"]["arguments"] == "{}"  # broken JSON is not echoed back to the server
    assert [t["ok"] for t in res.tools] == [False, False, False, False, True]
    assert res.tools[0]["arguments"] == '{"expression": '


class _Meet(BaseModel):
    who: str


async def test_independent_calls_of_one_round_run_concurrently(make_app) -> None:  # type: ignore[no-untyped-def]
    barrier = asyncio.Barrier(2)  # passes only when both calls are running at the same time

    async def meet(p: _Meet) -> dict[str, str]:
        await barrier.wait()
        return {"met": p.who}

    app, stub = await make_app([calls_stream([("meet", '{"who": "a"}'), ("meet", '{"who": "b"}')]),
                                W.text_stream(["都到了。"])])
    set_registry(app, Registry([Tool("meet", "会合", "meet", _Meet, meet, timeout_s=5.0)]))
    res = await Assistant(app).ask("会合")
    assert res.answer == "都到了。"
    assert [r["data"]["met"] for r in tool_messages(stub.bodies[1])] == ["a", "b"]


async def test_a_provider_that_rejects_tools_is_asked_again_without_them(make_app) -> None:  # type: ignore[no-untyped-def]
    rejected = Reply.json({"error": {"message": '"auto" tool choice requires --enable-auto-tool-choice and '
                                                '--tool-call-parser to be set', "type": "BadRequestError",
                                     "code": 400}}, 400)
    app, stub = await make_app([rejected, W.text_stream(["没有工具也能回答。"])])
    res = await Assistant(app).ask("什么是LoRA")
    assert res.ok and res.answer == "没有工具也能回答。" and res.tools == []
    assert "tools" in stub.bodies[0] and "tools" not in stub.bodies[1]
    assert [(a["outcome"], a["error_kind"]) for a in res.attempts] == [("error", "bad_request"), ("ok", None)]


async def test_other_bad_requests_are_not_retried(make_app) -> None:  # type: ignore[no-untyped-def]
    app, stub = await make_app([W.vllm_flat_error(400, "maximum context length is 4096 tokens")])
    res = await Assistant(app).ask("什么是LoRA")
    assert not res.ok and len(stub.bodies) == 1


async def test_the_model_reads_the_notes_through_search_notes(make_app) -> None:  # type: ignore[no-untyped-def]
    app, stub = await make_app([W.tool_call_stream("search_notes", '{"query": "LoRA 低秩适配", "k": 2}'),
                                W.text_stream(["LoRA 是低秩适配 [1]。"])])
    res = await Assistant(app).ask("LoRA 的原理？")
    data = tool_messages(stub.bodies[1])[0]["data"]
    assert data["passages"] and data["passages"][0]["path"] == "knowledge/sft_peft.md"
    assert {"title", "path", "heading", "lines", "text"} <= data["passages"][0].keys()
    assert res.tools == [{"name": "search_notes", "arguments": {"query": "LoRA 低秩适配", "k": 2}, "ok": True}]


async def test_the_system_prompt_says_tool_results_are_data(make_app) -> None:  # type: ignore[no-untyped-def]
    app, stub = await make_app([W.text_stream(["好。"])])
    await Assistant(app).ask("你好")
    system = stub.bodies[0]["messages"][0]["content"]
    assert "不是指令" in system and "never instructions" in system


async def test_chat_streams_text_then_a_tool_note_then_final(make_app) -> None:  # type: ignore[no-untyped-def]
    app, stub = await make_app([
        calls_stream([("calculator", '{"expression": "2**10+3"}'), ("now", "{}")]),
        W.text_stream(["结果是 ", "1027。"]),
        W.text_stream(["刚才算的是 1027。"]),
    ])
    a = Assistant(app)
    events = [ev async for ev in a.chat("terminal:t", "2的10次方加3是多少？顺便说下时间")]
    kinds = [type(ev).__name__ for ev in events]
    assert kinds == ["TextDelta", "TextDelta", "ToolNote", "Final"]
    note = events[-2]
    assert isinstance(note, ToolNote) and note.names == ["calculator", "now"]
    assert note.line() == "🔧 calculator, now"
    assert isinstance(events[-1], Final) and events[-1].provider == "vllm"
    # the next turn sees the question and the final answer, not the tool plumbing
    [ev async for ev in a.chat("terminal:t", "刚才算的是什么？")]
    roles = [m["role"] for m in stub.bodies[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert stub.bodies[-1]["messages"][2]["content"] == "结果是 1027。"


async def test_text_before_a_tool_call_stays_apart_from_the_answer(make_app) -> None:  # type: ignore[no-untyped-def]
    def first(n: int) -> Reply:
        if n == 0:
            objs: list[dict | str] = [W.chunk_obj("我来算一下。"), W.chunk_obj(None, tool_calls=[
                {"index": 0, "id": "c0", "type": "function",
                 "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'}}]),
                W.chunk_obj(None, finish="tool_calls")]
            return Reply(200, headers=W.SSE, chunks=W.sse(objs))
        return W.text_stream(["等于 2。"])

    app, stub = await make_app(first)
    text = "".join([ev.text async for ev in Assistant(app).chat("t:2", "1+1") if isinstance(ev, TextDelta)])
    assert text == "我来算一下。\n等于 2。"
    assert stub.bodies[1]["messages"][-2]["content"] == "我来算一下。"


async def test_spark_gets_its_tool_calls_switch(make_app) -> None:  # type: ignore[no-untyped-def]
    app, stub = await make_app([W.text_stream(["好。"])], STUDYBOT_PROVIDERS="spark", SPARK_API_PASSWORD="pw-123456",
                               SPARK_BASE_URL="{url}/v1")
    res = await Assistant(app).ask("你好", provider="spark")
    assert res.ok
    assert stub.bodies[0]["tool_calls_switch"] is True and stub.bodies[0]["tools"]
