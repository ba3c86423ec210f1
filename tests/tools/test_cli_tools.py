"""The issue's must-show runs, as a user would run them: a subprocess against loopback stubs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import arun_cli, clean_env
from tests.stubs import openai_wire as W
from tests.stubs.http_server import Reply, Request, StubServer

HOT = {"ok": 1, "data": {
    "hotgov": {"word": "#置顶的官方话题#", "num": 0},
    "realtime": [
        {"word": "大模型高考作文", "num": 2345678, "rank": 0, "label_name": "热", "realpos": 1},
        {"word": "某品牌新品发布", "num": 999999, "rank": 1, "label_name": "荐", "is_ad": 1, "realpos": 2},
        {"word": "国产开源模型登顶榜单", "num": 1234567, "rank": 1, "label_name": "新", "realpos": 3},
        {"word": "@everyone 快来看", "num": 345678, "rank": 2, "label_name": "沸", "realpos": 4},
    ]}}


async def test_ask_runs_the_calculator_tool_and_lists_it(kb_data_dir: Path) -> None:
    replies = iter([W.tool_call_stream("calculator", '{"expression": "2**10+3"}'),
                    W.text_stream(["2 的 10 次方加 3 等于 ", "1027。"])])

    def route(req: Request) -> Reply:
        return next(replies)

    async with StubServer(route) as srv:
        env = clean_env(kb_data_dir, VLLM_BASE_URL=f"{srv.url}/v1", VLLM_MODEL="m", STUDYBOT_PROVIDERS="vllm")
        code, out, err = await arun_cli(["ask", "2的10次方加3是多少", "--provider", "vllm", "--json"], env)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["answer"] == "2 的 10 次方加 3 等于 1027。"
    assert doc["tools"] == [{"name": "calculator", "arguments": {"expression": "2**10+3"}, "ok": True}]
    assert doc["provider"] == "vllm" and [a["outcome"] for a in doc["attempts"]] == ["ok", "ok"]
    first, second = (r.json() for r in srv.requests)
    assert {t["function"]["name"] for t in first["tools"]} >= {"calculator", "search_notes", "weibo_hot"}
    tool_msgs = [m for m in second["messages"] if m["role"] == "tool"]
    assert len(tool_msgs) == 1 and tool_msgs[0]["tool_call_id"] == "call_1"
    assert json.loads(tool_msgs[0]["content"])["data"]["result"] == 1027
    assert second["messages"][-2]["tool_calls"][0]["function"] == {"name": "calculator",
                                                                   "arguments": '{"expression": "2**10+3"}'}


async def test_offline_chat_answers_hot_search_from_weibo_hot(kb_data_dir: Path) -> None:
    async with StubServer(lambda req: Reply.json(HOT)) as srv:
        env = clean_env(kb_data_dir, WEIBO_HOT_URL=f"{srv.url}/ajax/side/hotSearch", WEIBO_MOBILE_URL="",
                        WEIBO_SUMMARY_URL="", STUDYBOT_PROVIDERS="offline")
        code, out, err = await arun_cli(["chat"], env, stdin="今天微博热搜有哪些？\n")
    assert code == 0, err
    assert "微博热搜" in out and "离线" in out
    assert "1. 大模型高考作文" in out and "2. 国产开源模型登顶榜单" in out
    assert "某品牌新品发布" not in out and "置顶的官方话题" not in out  # ads and pinned topics left out
    assert "@everyone" not in out  # scraped text is scrubbed
    assert [r.path for r in srv.requests] == ["/ajax/side/hotSearch"]
    assert srv.requests[0].headers.get("referer") == "https://weibo.com/"
