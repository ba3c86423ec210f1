"""The OpenAI-compatible transport over real HTTP against loopback stubs: what the user gets
for each provider's wire format, each fault, and each quirk."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import threading
import warnings
from dataclasses import replace
from typing import Any

import pytest

from providers import errors as E
from providers.openai_compat import OpenAICompatProvider, Timeouts
from providers.presets import PRESETS
from providers.types import Final, ReasoningDelta, TextDelta, ToolCallDelta, collect
from tests.stubs import openai_wire as W
from tests.stubs.http_server import Reply, Script, StubServer

FAST = Timeouts(connect=1, first_token=0.3, total=5)
MSGS = [{"role": "user", "content": "什么是注意力机制？"}]
CHAT = "/chat/completions"
KEY = "stub-key-7f3a9c2e5b1d4f6a8c0e"


@pytest.fixture
async def server() -> StubServer:
    s = StubServer(Script())
    await s.start()
    yield s
    await s.close()


@pytest.fixture
async def made() -> list[OpenAICompatProvider]:
    """Providers built by a test; their pooled clients are closed before the test's loop ends."""
    providers: list[OpenAICompatProvider] = []
    yield providers
    for p in providers:
        await p.aclose()


@pytest.fixture
def make(server: StubServer, made: list[OpenAICompatProvider]):
    """make(preset_name, *replies) -> a provider pointed at the stub, with `replies` scripted for chat."""

    def _make(name: str, *replies: Reply, key: str = KEY, model: str = "m", **routes: Any) -> OpenAICompatProvider:
        server.handler = Script({CHAT: list(replies), **routes})
        preset = replace(PRESETS[name], base_url=server.url + "/v1", default_model=model)
        p = OpenAICompatProvider(preset, api_key=key, timeouts=FAST)
        made.append(p)
        return p

    return _make


def chat_requests(server: StubServer) -> list[Any]:
    return [r for r in server.requests if r.path.endswith(CHAT)]


async def events_until_error(agen: Any) -> tuple[list[Any], E.ProviderError]:
    events: list[Any] = []
    with pytest.raises(E.ProviderError) as ei:
        async for ev in agen:
            events.append(ev)
    return events, ei.value


# ---- normal streams -------------------------------------------------------------------------------

async def test_openai_stream(make, server: StubServer) -> None:
    p = make("openai", W.text_stream(["注意力", "机制", "是……"], usage=(12, 3)))
    events = [ev async for ev in p.chat(MSGS)]
    texts = [ev.text for ev in events if isinstance(ev, TextDelta)]
    assert "".join(texts) == "注意力机制是……"
    assert sum(isinstance(ev, Final) for ev in events) == 1 and isinstance(events[-1], Final)
    final = events[-1]
    assert final.finish_reason == "stop"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (12, 3)  # from the usage-only chunk
    assert final.request_id == "req-stub-1"
    assert final.provider == "openai" and final.model == "m"
    body = chat_requests(server)[-1].json()
    assert body["stream"] is True and body["model"] == "m"
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == MSGS
    assert chat_requests(server)[-1].headers["authorization"] == f"Bearer {KEY}"


async def test_spark_stream_data_without_space(make, server: StubServer) -> None:
    p = make("spark", W.spark_stream(["你好，", "我是星火。"], sid="cha000b0001@dx1"))
    reply = await collect(p.chat(MSGS))
    assert reply.text == "你好，我是星火。"
    assert reply.final.request_id == "cha000b0001@dx1"
    assert (reply.final.usage.prompt_tokens, reply.final.usage.completion_tokens) == (8, 2)
    assert "stream_options" not in chat_requests(server)[-1].json()  # Spark sends usage by itself


async def test_non_stream_completion(make, server: StubServer) -> None:
    p = make("openai", W.completion("一句话回答。", usage=(7, 4)))
    reply = await collect(p.chat(MSGS, stream=False))
    assert reply.text == "一句话回答。"
    assert reply.final.finish_reason == "stop"
    assert (reply.final.usage.prompt_tokens, reply.final.usage.completion_tokens) == (7, 4)
    assert chat_requests(server)[-1].json()["stream"] is False


# ---- errors hidden in 200 bodies (Spark) ----------------------------------------------------------

@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
async def test_spark_200_body_code_11202(make, server: StubServer, stream: bool) -> None:
    p = make("spark", W.spark_body_error(11202, "AppIdQpsOverFlowError"))
    events, err = await events_until_error(p.chat(MSGS, stream=stream))
    assert events == []  # never an empty "successful" reply
    assert type(err) is E.RateLimited
    assert err.code == 11202 and not err.daily and err.retryable
    assert err.request_id == "cha000b0002@dx1"
    assert err.provider == "spark"


async def test_spark_200_body_code_11201_is_daily(make) -> None:
    p = make("spark", W.spark_body_error(11201, "AppIdDailyLimitError"))
    _, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.RateLimited and err.daily and not err.retryable


async def test_spark_chunk_code_10013(make) -> None:
    p = make("spark", W.spark_chunk_error(10013))
    events, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.ContentFiltered
    assert err.code == 10013 and err.request_id == "cha000b0003@dx1"
    assert not any(isinstance(ev, Final) for ev in events)


async def test_spark_chunk_code_after_text(make) -> None:
    base = {"code": 0, "message": "Success", "sid": "cha-mid@dx1"}
    objs: list[dict | str] = [
        {**base, "choices": [{"delta": {"role": "assistant", "content": "开头"}, "index": 0}]},
        {"code": 10014, "message": "output audit failed", "sid": "cha-mid@dx1"},
    ]
    p = make("spark", Reply(200, headers=W.SSE, chunks=W.sse(objs, prefix="data:", done=False)))
    events, err = await events_until_error(p.chat(MSGS))
    assert [ev.text for ev in events if isinstance(ev, TextDelta)] == ["开头"]
    assert type(err) is E.ContentFiltered and err.code == 10014


# ---- HTTP errors per provider ---------------------------------------------------------------------

async def test_qianfan_429_retry_after(make, server: StubServer) -> None:
    p = make("ernie", W.qianfan_error(429, "rpm_rate_limit_exceeded", headers={"retry-after": "2"}))
    _, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.RateLimited
    assert err.retry_after == 2.0 and not err.daily and err.retryable
    assert err.code == "rpm_rate_limit_exceeded" and err.http_status == 429
    assert err.request_id == "as-stub0001"
    assert len(chat_requests(server)) == 1  # the SDK's own retries are off


async def test_qianfan_401(make) -> None:
    p = make("ernie", W.qianfan_error(401, "access_denied", "Access denied"))
    _, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.AuthError and err.http_status == 401 and not err.retryable


async def test_dashscope_data_inspection_failed(make) -> None:
    p = make("qwen", W.dashscope_error(400, "data_inspection_failed",
                                       "Input data may contain inappropriate content."))
    _, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.ContentFiltered
    assert err.code == "data_inspection_failed" and err.request_id == "ds-stub-0001"
    assert not err.retryable


async def test_dashscope_invalid_api_key(make) -> None:
    p = make("qwen", W.dashscope_error(401, "invalid_api_key", "Incorrect API key provided."))
    _, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.AuthError and err.code == "invalid_api_key"


async def test_vllm_flat_error(make) -> None:
    p = make("vllm", W.vllm_flat_error(400, "This model's maximum context length is 4096 tokens."))
    _, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.BadRequest and err.http_status == 400 and not err.retryable
    assert "maximum context length" in str(err)


async def test_vllm_nested_error(make) -> None:
    body = {"error": {"message": "model not found", "type": "NotFoundError", "param": None, "code": 404}}
    p = make("vllm", Reply.json(body, 404))
    _, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.BadRequest and err.http_status == 404


@pytest.mark.parametrize("status", [500, 502, 503])
@pytest.mark.parametrize("shape", ["json", "html"])
async def test_5xx_is_unavailable(make, server: StubServer, status: int, shape: str) -> None:
    reply = (Reply.json({"error": {"message": "upstream failed", "type": "server_error"}}, status) if shape == "json"
             else Reply.text("<html><body>Bad Gateway</body></html>", status))
    p = make("openai", reply)
    _, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.ProviderUnavailable
    assert err.retryable and err.http_status == status
    assert len(chat_requests(server)) == 1


async def test_one_request_per_failed_call(make, server: StubServer) -> None:
    p = make("qwen", W.dashscope_error(429, "Throttling.RateQuota", "Requests rate limit exceeded"),
             W.text_stream(["不该", "被请求"]))
    _, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.RateLimited
    assert len(chat_requests(server)) == 1
    reply = await collect(p.chat(MSGS))  # the next call is a new request, answered by the next reply
    assert reply.text == "不该被请求" and len(chat_requests(server)) == 2


# ---- transport faults -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused(made: list[OpenAICompatProvider]) -> None:
    preset = replace(PRESETS["openai"], base_url=f"http://127.0.0.1:{_free_port()}/v1", default_model="m")
    p = OpenAICompatProvider(preset, api_key=KEY, timeouts=FAST)
    made.append(p)
    _, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.ProviderUnavailable and err.retryable


async def test_stall_before_first_byte(make, server: StubServer) -> None:
    p = make("openai", W.text_stream(["迟到"], first_delay=2.0))
    events, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.Timeout and err.retryable
    assert events == []
    assert len(chat_requests(server)) == 1


async def test_stall_mid_stream(make) -> None:
    p = make("openai", W.text_stream(["第一段", "第二段", "第三段"], stall_after=2))
    events, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.Timeout
    assert [ev.text for ev in events if isinstance(ev, TextDelta)] == ["第一段"]


async def test_reset_mid_stream(make) -> None:
    p = make("openai", W.text_stream(["第一段", "第二段", "第三段"], reset_after=2))
    events, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.ProviderUnavailable and err.retryable
    assert err.request_id == "req-stub-1"
    assert not any(isinstance(ev, Final) for ev in events)


async def test_malformed_sse_is_a_provider_error(make) -> None:
    chunks = W.sse([W.chunk_obj("好的"), '{"choices": [ {broken json'], done=True)
    p = make("openai", Reply(200, headers=W.SSE, chunks=chunks))
    _, err = await events_until_error(p.chat(MSGS))
    assert isinstance(err, E.ProviderError)


@pytest.mark.parametrize(
    "body",
    [{"id": "x", "choices": "not a list"}, {"id": "x", "choices": [{"message": "just a string"}]},
     {"id": "x", "choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": "many"}}],
    ids=["choices-str", "message-str", "usage-str"],
)
async def test_malformed_completion_body_is_a_provider_error(make, body: dict) -> None:
    p = make("openai", Reply.json(body))
    _, err = await events_until_error(p.chat(MSGS, stream=False))
    assert type(err) is E.ProviderUnavailable


@pytest.mark.parametrize("done", [True, False], ids=["with-DONE", "eof"])
async def test_stream_without_finish_or_usage(make, done: bool) -> None:
    chunks = W.sse([W.chunk_obj("只有"), W.chunk_obj("一半")], done=done)
    p = make("openai", Reply(200, headers=W.SSE, chunks=chunks))
    events, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.ProviderUnavailable
    assert not any(isinstance(ev, Final) for ev in events)


async def test_midstream_error_chunk(make) -> None:
    p = make("vllm", W.midstream_error(["第一段"], "engine crashed", 500))
    events, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.ProviderUnavailable
    assert [ev.text for ev in events if isinstance(ev, TextDelta)] == ["第一段"]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
async def test_finish_reason_content_filter(make, stream: bool) -> None:
    if stream:
        objs: list[dict | str] = [W.chunk_obj("部分"), W.chunk_obj(None, finish="content_filter"),
                                  W.chunk_obj(None, usage=(5, 1), empty_choices=True)]
        reply = Reply(200, headers=W.SSE, chunks=W.sse(objs))
    else:
        reply = W.completion("", finish="content_filter")
    p = make("openai", reply)
    _, err = await events_until_error(p.chat(MSGS, stream=stream))
    assert type(err) is E.ContentFiltered


# ---- reasoning and tools --------------------------------------------------------------------------

async def test_think_tags_split_across_chunks(make) -> None:
    pieces = ["<thi", "nk>先想", "一想</th", "ink>答案", "是 42。"]
    p = make("vllm", W.text_stream(pieces))
    events = [ev async for ev in p.chat(MSGS)]
    text = "".join(ev.text for ev in events if isinstance(ev, TextDelta))
    reasoning = "".join(ev.text for ev in events if isinstance(ev, ReasoningDelta))
    assert text == "答案是 42。"
    assert reasoning == "先想一想"


async def test_reasoning_content_kept_out_of_text(make) -> None:
    objs: list[dict | str] = [W.chunk_obj(None, reasoning="用户问的是"), W.chunk_obj(None, reasoning="注意力。"),
                              W.chunk_obj("注意力是……"), W.chunk_obj(None, finish="stop"),
                              W.chunk_obj(None, usage=(3, 3), empty_choices=True)]
    p = make("qwen", Reply(200, headers=W.SSE, chunks=W.sse(objs)))
    reply = await collect(p.chat(MSGS))
    assert reply.text == "注意力是……"
    assert reply.reasoning == "用户问的是注意力。"


async def test_non_stream_reasoning_and_think(make) -> None:
    p = make("qwen", W.completion("<think>内心独白</think>最终答案", extra=None))
    reply = await collect(p.chat(MSGS, stream=False))
    assert reply.text == "最终答案" and reply.reasoning == "内心独白"


async def test_streamed_tool_call_fragments_joined(make) -> None:
    args = json.dumps({"query": "transformer 注意力", "k": 3}, ensure_ascii=False)
    p = make("qwen", W.tool_call_stream("search_notes", args, call_id="call_9"))
    events = [ev async for ev in p.chat(MSGS, tools=[_TOOL])]
    assert sum(isinstance(ev, ToolCallDelta) for ev in events) == 2
    reply = await collect(_replay(events))
    assert reply.tool_calls == [{"id": "call_9", "name": "search_notes", "arguments": args}]
    assert json.loads(reply.tool_calls[0]["arguments"]) == {"query": "transformer 注意力", "k": 3}
    assert reply.final.finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
async def test_ollama_tool_arguments_as_object(make, stream: bool) -> None:
    call = {"index": 0, "id": "call_o1", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "北京", "days": 2}}}
    if stream:
        objs: list[dict | str] = [W.chunk_obj(None, tool_calls=[call]), W.chunk_obj(None, finish="tool_calls"),
                                  W.chunk_obj(None, usage=(9, 9), empty_choices=True)]
        reply = Reply(200, headers=W.SSE, chunks=W.sse(objs))
    else:
        reply = W.completion("", tool_calls=[call])
    p = make("ollama", reply)
    got = await collect(p.chat(MSGS, stream=stream, tools=[_TOOL]))
    assert len(got.tool_calls) == 1
    assert got.tool_calls[0]["name"] == "get_weather"
    assert json.loads(got.tool_calls[0]["arguments"]) == {"city": "北京", "days": 2}


async def test_tool_call_without_arguments(make) -> None:
    call = {"id": "call_n", "type": "function", "function": {"name": "list_courses"}}
    p = make("ollama", W.completion("", tool_calls=[call]))
    got = await collect(p.chat(MSGS, stream=False, tools=[_TOOL]))
    assert got.tool_calls == [{"id": "call_n", "name": "list_courses", "arguments": ""}]  # not "null"


# ---- provider quirks in the request ---------------------------------------------------------------

async def test_ernie_roles_alternate(make, server: StubServer) -> None:
    msgs = [
        {"role": "system", "content": "你是学伴。"},
        {"role": "assistant", "content": "（欢迎语）"},
        {"role": "user", "content": "第一问"},
        {"role": "user", "content": "补充"},
        {"role": "assistant", "content": "答一"},
        {"role": "assistant", "content": "答二"},
        {"role": "user", "content": "第二问"},
    ]
    p = make("ernie", W.text_stream(["好"]))
    await collect(p.chat(msgs))
    sent = chat_requests(server)[-1].json()["messages"]
    roles = [m["role"] for m in sent]
    assert roles == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "第一问\n\n补充"
    assert sent[2]["content"] == "答一\n\n答二"
    assert msgs[2]["content"] == "第一问"  # the caller's list is untouched


async def test_other_presets_do_not_merge_roles(make, server: StubServer) -> None:
    msgs = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    p = make("qwen", W.text_stream(["好"]))
    await collect(p.chat(msgs))
    assert [m["content"] for m in chat_requests(server)[-1].json()["messages"]] == ["a", "b"]


async def test_qwen_non_stream_disables_thinking(make, server: StubServer) -> None:
    p = make("qwen", W.completion("好"), W.text_stream(["好"]))
    await collect(p.chat(MSGS, stream=False))
    assert chat_requests(server)[-1].json()["enable_thinking"] is False
    await collect(p.chat(MSGS, stream=True))
    assert "enable_thinking" not in chat_requests(server)[-1].json()


async def test_qwen_explicit_enable_thinking_wins(make, server: StubServer) -> None:
    p = make("qwen", W.completion("好"))
    await collect(p.chat(MSGS, stream=False, extra_body={"enable_thinking": True}))
    assert chat_requests(server)[-1].json()["enable_thinking"] is True


async def test_spark_tools_switch(make, server: StubServer) -> None:
    p = make("spark", W.spark_stream(["好"]))
    await collect(p.chat(MSGS, tools=[_TOOL]))
    body = chat_requests(server)[-1].json()
    assert body["tool_calls_switch"] is True
    assert body["tools"] == [_TOOL]
    await collect(p.chat(MSGS))
    assert "tool_calls_switch" not in chat_requests(server)[-1].json()


async def test_non_spark_tools_have_no_switch(make, server: StubServer) -> None:
    p = make("qwen", W.text_stream(["好"]))
    await collect(p.chat(MSGS, tools=[_TOOL]))
    assert "tool_calls_switch" not in chat_requests(server)[-1].json()


async def test_vllm_model_discovered_from_models_list(make, server: StubServer) -> None:
    p = make("vllm", W.text_stream(["好"]), model="", **{"/models": [W.models_list("Qwen/Qwen2.5-7B-Instruct")]})
    reply = await collect(p.chat(MSGS))
    assert reply.final.model == "Qwen/Qwen2.5-7B-Instruct"
    assert chat_requests(server)[-1].json()["model"] == "Qwen/Qwen2.5-7B-Instruct"


async def test_total_time_limit(make) -> None:
    p = make("openai", W.text_stream([f"第{i}段" for i in range(20)], chunk_delay=0.1))
    p.timeouts = Timeouts(connect=1, first_token=0.3, total=0.35)  # each gap is short; the whole is too long
    events, err = await events_until_error(p.chat(MSGS))
    assert type(err) is E.Timeout
    assert 0 < sum(isinstance(ev, TextDelta) for ev in events) < 20


async def test_stopping_early_gives_the_connection_back(make) -> None:
    p = make("openai", W.text_stream(["第一段", "第二段", "第三段"], stall_after=2))
    events = p.chat(MSGS)
    async for ev in events:
        if isinstance(ev, TextDelta):
            break  # the user cancelled; the server is still "thinking"
    await events.aclose()
    try:  # httpx2/httpcore2 internals: skip rather than pass vacuously if they move
        pool = p.client._client._transport._pool
        connections = list(pool.connections)
    except AttributeError:
        pytest.skip("cannot see the SDK's connection pool")
    assert connections == [] or all(c.is_idle() or c.is_closed() for c in connections), connections


def box_requests(box: dict[str, Any]) -> list[Any]:
    return [r for r in box["server"].requests if r.path.endswith(CHAT)]


def test_provider_survives_a_second_event_loop() -> None:
    """The CLI may call asyncio.run more than once; pooled connections must not leak across loops."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
            async with StubServer(Script({CHAT: [W.text_stream(["同一个", "服务"])]})) as s:
                box["url"], box["server"] = s.url, s
                ready.set()
                await box["stop"].wait()

        asyncio.run(main())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(5)
    # the sockets of loops that end without aclose() are reclaimed by the GC: expected here, so quiet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            preset = replace(PRESETS["openai"], base_url=box["url"] + "/v1", default_model="m")
            p = OpenAICompatProvider(preset, api_key=KEY, timeouts=FAST)
            for _ in range(2):  # no aclose(): each loop ends with a pooled keep-alive connection
                assert asyncio.run(collect(p.chat(MSGS))).text == "同一个服务"

            async def last_call() -> str:
                reply = await collect(p.chat(MSGS))
                await p.aclose()
                return reply.text

            assert asyncio.run(last_call()) == "同一个服务"
            assert len(box_requests(box)) == 3
            gc.collect()
        finally:
            box["loop"].call_soon_threadsafe(box["stop"].set)
            t.join(5)


# ---- keys never leak ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "reply"),
    [
        ("openai", Reply.json({"error": {"message": f"Incorrect API key provided: {KEY}. You can find your key…",
                                         "type": "invalid_request_error", "code": "invalid_api_key"}}, 401)),
        ("qwen", W.dashscope_error(401, "invalid_api_key", f"Invalid API-key provided: {KEY}")),
        ("ernie", W.qianfan_error(429, "rpm_rate_limit_exceeded", f"rate limited for key {KEY}")),
        ("vllm", W.vllm_flat_error(400, f"bad request from Bearer {KEY}")),
        ("spark", W.spark_body_error(11200, f"AppIdNoAuthError for {KEY}")),
        ("openai", Reply.text(f"<html>proxy error, key={KEY}</html>", 502)),
    ],
    ids=["openai-401", "dashscope-401", "qianfan-429", "vllm-400", "spark-200-body", "html-502"],
)
async def test_key_never_in_error(make, name: str, reply: Reply) -> None:
    p = make(name, reply)
    _, err = await events_until_error(p.chat(MSGS))
    for text in (str(err), err.user_message(), repr(err), err.message, str(err.args)):
        assert KEY not in text
        assert KEY[:16] not in text


async def test_key_never_in_midstream_error(make) -> None:
    p = make("vllm", W.midstream_error(["a"], f"worker died holding {KEY}"))
    _, err = await events_until_error(p.chat(MSGS))
    assert KEY not in str(err) and KEY not in repr(err)


async def test_user_message_is_chinese_first(make) -> None:
    p = make("ernie", W.qianfan_error(429, "rpm_rate_limit_exceeded", headers={"retry-after": "2"}))
    _, err = await events_until_error(p.chat(MSGS))
    msg = err.user_message()
    assert "频繁" in msg
    assert msg.index("频繁") < msg.index("rate limited")


_TOOL = {"type": "function", "function": {"name": "search_notes", "description": "搜索学习笔记",
                                          "parameters": {"type": "object", "properties": {"query": {"type": "string"}},
                                                         "required": ["query"]}}}


async def _replay(events: list[Any]):
    for ev in events:
        yield ev
