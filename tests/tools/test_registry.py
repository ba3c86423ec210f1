"""The registry: OpenAI tool schemas, and bad calls that come back as tool errors, never exceptions."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from bot.config import load_settings
from bot.tools.builtin import build_registry
from bot.tools.registry import Registry, Tool, ToolError

FIXED = datetime(2025, 3, 5, 1, 30, tzinfo=UTC)  # 09:30 in Shanghai, a Wednesday


async def _no_feed(*_: object) -> list[dict]:
    raise ToolError("not in this test")


@pytest.fixture
def reg() -> Registry:
    return build_registry(load_settings(), fetch_hot=_no_feed, fetch_news=_no_feed, clock=lambda: FIXED,
                          rng=random.Random(7))


def test_every_builtin_tool_has_an_openai_schema(reg: Registry) -> None:
    assert reg.names() == ["search_notes", "news_today", "weibo_hot", "summarize_url", "quiz_question",
                           "calculator", "now"]
    for s in reg.schemas():
        fn = s["function"]
        assert s["type"] == "function" and fn["name"] in reg
        assert " / " in fn["description"]  # Chinese / English
        assert fn["parameters"]["type"] == "object" and "properties" in fn["parameters"]
        json.dumps(s)
    calc = reg.get("calculator")
    assert calc is not None and calc.schema()["function"]["parameters"]["required"] == ["expression"]


async def test_a_good_call_is_wrapped_as_data(reg: Registry) -> None:
    r = await reg.call("calculator", '{"expression": "2**10+3"}', "call_1")
    assert r.ok and r.call_id == "call_1" and r.arguments == {"expression": "2**10+3"}
    assert json.loads(r.content) == {"tool": "calculator", "ok": True,
                                     "data": {"expression": "2**10+3", "result": 1027}}
    assert r.summary() == {"name": "calculator", "arguments": {"expression": "2**10+3"}, "ok": True}


@pytest.mark.parametrize(("name", "args", "says"), [
    ("calculator", '{"expression": "1+', "not valid JSON"),
    ("calculator", '["1+1"]', "must be a JSON object"),
    ("calculator", '{"expression": 5}', "invalid arguments: expression"),
    ("calculator", '{"expr": "1+1"}', "invalid arguments"),
    ("calculator", "{}", "expression: Field required"),
    ("quiz_question", '{"difficulty": "impossible"}', "difficulty"),
    ("weather", '{"city": "北京"}', "unknown tool"),
    ("", "{}", "unknown tool"),
    ("calculator", '{"expression": "x+1"}', "names are not allowed"),
    ("calculator", "{" + " " * 5000 + "}", "longer than"),
])
async def test_malformed_calls_become_tool_errors(reg: Registry, name: str, args: str, says: str) -> None:
    r = await reg.call(name, args, "c9")
    assert not r.ok and says in (r.error or "")
    doc = json.loads(r.content)
    assert doc["ok"] is False and says in doc["error"]
    if "unknown tool" in says:
        assert "calculator" in doc["hint"]


async def test_empty_arguments_mean_none(reg: Registry) -> None:
    r = await reg.call("now", "", "c1")
    assert r.ok and r.data == {"datetime": "2025-03-05T09:30:00+08:00", "date": "2025-03-05", "time": "09:30",
                               "weekday": "星期三", "tz": "Asia/Shanghai"}


class _P(BaseModel):
    n: int = 1


async def test_timeouts_failures_and_size_bounds() -> None:
    async def slow(p: _P) -> str:
        await asyncio.Event().wait()
        return "never"

    async def broken(p: _P) -> str:
        raise RuntimeError("secret internals")

    async def big(p: _P) -> dict:
        return {"text": " ".join(str(i) for i in range(2000))}

    async def rude(p: _P) -> dict:
        return {"text": "@everyone look at [this](https://evil.example) discord.gg/abc"}

    reg = Registry([Tool("slow", "慢", "slow", _P, slow, timeout_s=0.05),
                    Tool("broken", "坏", "broken", _P, broken),
                    Tool("big", "大", "big", _P, big, max_result_chars=1000),
                    Tool("rude", "粗", "rude", _P, rude)])
    r = await reg.call("slow", "{}")
    assert not r.ok and "timed out" in (r.error or "")
    r = await reg.call("broken", "{}")
    assert not r.ok and "RuntimeError" in (r.error or "") and "secret" not in r.content
    r = await reg.call("big", "{}")
    assert r.ok and r.truncated and len(r.content) < 1200 and "truncated" in r.content
    r = await reg.call("rude", "{}")
    assert r.ok and "@everyone" not in r.content and "discord.gg/abc" not in r.content
    assert "](https://" not in r.content


def test_a_name_is_registered_once() -> None:
    async def f(p: _P) -> int:
        return 1

    reg = Registry([Tool("t", "t", "t", _P, f)])
    with pytest.raises(ValueError):
        reg.register(Tool("t", "t", "t", _P, f))


async def test_quiz_question_hides_the_answer_unless_asked(reg: Registry) -> None:
    r = await reg.call("quiz_question", '{"topic": "量化"}')
    assert r.ok and r.data["topic"] == "quantization" and len(r.data["options"]) == 4
    assert "answer" not in r.data and "explanation" not in r.data
    again = await reg.call("quiz_question", json.dumps({"id": r.data["id"], "reveal_answer": True}))
    assert again.data["question"] == r.data["question"]
    assert again.data["answer_letter"] == "ABCD"[again.data["answer"]] and again.data["explanation"]
    bad = await reg.call("quiz_question", '{"topic": "烹饪"}')
    assert not bad.ok and "unknown topic" in (bad.error or "")


async def test_quiz_draws_are_reproducible_with_a_seed() -> None:
    def ids(seed: int) -> list[str]:
        reg = build_registry(load_settings(), fetch_hot=_no_feed, fetch_news=_no_feed, rng=random.Random(seed))
        return [asyncio.run(reg.call("quiz_question", "{}")).data["id"] for _ in range(5)]

    first = await asyncio.to_thread(ids, 3)
    assert first == await asyncio.to_thread(ids, 3)


def test_schemas_are_plain_for_strict_providers() -> None:
    class P(BaseModel):
        title: str | None = None
        n: int = 1

    async def f(p: P) -> int:
        return 1

    params = Tool("t", "t", "t", P, f).schema()["function"]["parameters"]
    assert params["properties"]["title"] == {"type": "string"}  # a field named "title" survives
    assert "anyOf" not in json.dumps(params) and '"title": "' not in json.dumps(params)
    assert params["properties"]["n"] == {"default": 1, "type": "integer"}
