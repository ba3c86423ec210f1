"""Reply builders for the OpenAI-compatible wire format and each provider's variant of it:
plain OpenAI/vLLM SSE, Spark (`data:` without a space, body `code`, `sid`), Qianfan v2 and
DashScope compatible-mode error bodies, vLLM's flat error shape, Ollama /v1.

Run as a module to serve named scenarios on one port, one path prefix per provider:
    python -m tests.stubs.openai_wire --port 8801
    SPARK_BASE_URL=http://127.0.0.1:8801/spark_11202/v1 QWEN_BASE_URL=http://127.0.0.1:8801/http_503/v1 ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from .http_server import Reply, Request, StubServer

SSE = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


def chunk_obj(content: str | None = None, *, finish: str | None = None, usage: tuple[int, int] | None = None,
              id: str = "chatcmpl-stub", model: str = "stub-model", tool_calls: list[dict] | None = None,
              reasoning: str | None = None, extra: dict[str, Any] | None = None, empty_choices: bool = False) -> dict:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    obj: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": 1700000000, "model": model,
                           "choices": [] if empty_choices else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        obj["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    if extra:
        obj.update(extra)
    return obj


def sse(objs: list[dict | str], *, prefix: str = "data: ", done: bool = True) -> list[bytes]:
    out = [f"{prefix}{o if isinstance(o, str) else json.dumps(o, ensure_ascii=False)}\n\n".encode() for o in objs]
    if done:
        out.append(f"{prefix}[DONE]\n\n".encode())
    return out


def text_stream(pieces: list[str], *, usage: tuple[int, int] | None = (12, None), model: str = "stub-model",
                prefix: str = "data: ", extra: dict[str, Any] | None = None, **kw: Any) -> Reply:
    """A normal OpenAI-style stream: role chunk, content chunks, finish, usage-only chunk."""
    objs: list[dict | str] = [chunk_obj("", model=model, extra=extra)]
    objs += [chunk_obj(p, model=model, extra=extra) for p in pieces]
    objs.append(chunk_obj(None, finish="stop", model=model, extra=extra))
    if usage is not None:
        u = (usage[0], usage[1] if usage[1] is not None else len(pieces))
        objs.append(chunk_obj(None, usage=u, model=model, empty_choices=True, extra=extra))
    return Reply(200, headers={**SSE, "x-request-id": "req-stub-1"}, chunks=sse(objs, prefix=prefix), **kw)


def spark_stream(pieces: list[str], sid: str = "cha000b0001@dx1") -> Reply:
    """Spark HTTP: `data:` without a space, `code`/`message`/`sid` on every chunk, usage on the last."""
    base = {"code": 0, "message": "Success", "sid": sid}
    objs: list[dict | str] = [{**base, "id": sid, "created": 1700000000,
                               "choices": [{"delta": {"role": "assistant", "content": p}, "index": 0}]}
                              for p in pieces]
    objs[-1]["usage"] = {"prompt_tokens": 8, "completion_tokens": len(pieces), "total_tokens": 8 + len(pieces)}
    return Reply(200, headers=SSE, chunks=sse(objs, prefix="data:"))


def spark_body_error(code: int = 11202, message: str = "AppIdQpsOverFlowError") -> Reply:
    """Spark answers HTTP 200 with a JSON body carrying a non-zero business code."""
    return Reply.json({"code": code, "message": message, "sid": "cha000b0002@dx1", "choices": []})


def spark_chunk_error(code: int = 10013) -> Reply:
    objs: list[dict | str] = [{"code": code, "message": "input content audit failed", "sid": "cha000b0003@dx1"}]
    return Reply(200, headers=SSE, chunks=sse(objs, prefix="data:", done=False))


def qianfan_error(status: int, code: str, message: str = "", headers: dict[str, str] | None = None) -> Reply:
    return Reply.json({"error": {"code": code, "message": message or code, "type": "invalid_request_error"},
                       "id": "as-stub0001"}, status, headers)


def dashscope_error(status: int, code: str, message: str = "") -> Reply:
    return Reply.json({"error": {"message": message or code, "type": code, "param": None, "code": code},
                       "request_id": "ds-stub-0001"}, status)


def vllm_flat_error(status: int = 400, message: str = "maximum context length exceeded") -> Reply:
    return Reply.json({"object": "error", "message": message, "type": "BadRequestError", "param": None,
                       "code": status}, status)


def midstream_error(pieces: list[str], message: str = "engine crashed", code: int = 500) -> Reply:
    objs: list[dict | str] = [chunk_obj(p) for p in pieces]
    objs.append({"error": {"message": message, "type": "internal_error", "code": code}})
    return Reply(200, headers=SSE, chunks=sse(objs, done=False))


def completion(content: str, *, tool_calls: list[dict] | None = None, usage: tuple[int, int] = (10, 5),
               finish: str = "stop", extra: dict[str, Any] | None = None) -> Reply:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = tool_calls
        finish = "tool_calls"
    body = {"id": "chatcmpl-stub", "object": "chat.completion", "created": 1700000000, "model": "stub-model",
            "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}
    if extra:
        body.update(extra)
    return Reply.json(body)


def tool_call_stream(name: str, arguments: str, call_id: str = "call_1") -> Reply:
    """A streamed tool call with the arguments split in two fragments, as Qwen and vLLM send them."""
    half = len(arguments) // 2
    objs: list[dict | str] = [
        chunk_obj(None, tool_calls=[{"index": 0, "id": call_id, "type": "function",
                                     "function": {"name": name, "arguments": arguments[:half]}}]),
        chunk_obj(None, tool_calls=[{"index": 0, "function": {"arguments": arguments[half:]}}]),
        chunk_obj(None, finish="tool_calls"),
        chunk_obj(None, usage=(20, 8), empty_choices=True),
    ]
    return Reply(200, headers=SSE, chunks=sse(objs))


def models_list(*ids: str) -> Reply:
    return Reply.json({"object": "list", "data": [{"id": i, "object": "model", "owned_by": "stub"} for i in ids]})


# ---- named scenarios for the runnable stub ------------------------------------------------------

def scenario(name: str, req: Request) -> Reply:
    if req.path.endswith("/models"):
        return models_list("stub-model")
    match name:
        case "ok":
            return text_stream(["你好！", "我是", "本地", " vLLM ", "模型。"])
        case "spark_ok":
            return spark_stream(["你好，", "我是星火。"])
        case "spark_11202":
            return spark_body_error(11202)
        case "http_503":
            return Reply.json({"error": {"message": "service unavailable", "code": "server_high_load"}}, 503)
        case "http_429":
            return qianfan_error(429, "rpm_rate_limit_exceeded", headers={"retry-after": "1"})
        case "http_401":
            return dashscope_error(401, "invalid_api_key")
        case "slow":
            return text_stream(["慢", "一点", "的", "回答"], chunk_delay=0.2)
        case "dies":
            return midstream_error(["第一段", "回答"])
    return Reply.json({"error": {"message": f"unknown scenario {name}"}}, 404)


def _route(req: Request) -> Reply:
    first = req.path.strip("/").split("/", 1)[0]
    return scenario(first, req)


async def _main(port: int) -> None:
    server = await StubServer(_route).start(port)
    print(f"stub listening on {server.url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    asyncio.run(_main(ap.parse_args().port))
