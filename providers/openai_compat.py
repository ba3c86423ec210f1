"""The one OpenAI-compatible transport: Spark HTTP, Qianfan v2 (ERNIE), DashScope compatible
mode (Qwen), vLLM, Ollama `/v1`, llama.cpp server, OpenAI, DeepSeek ...

Built on the `openai` SDK (imported lazily: it costs over a second), one shared client per
base URL and key, with the SDK's own retries off: the router owns retries. The SDK makes the
request; a stream's body is read by providers/sse.py into plain dicts (the SDK's per-chunk
models cost four times what everything else in a reply does). Errors hidden in
200 bodies (Spark `code`, a JSON error where a stream was expected, `{"error":...}` chunks)
are raised as ProviderErrors like any HTTP error.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from . import errors as E
from .presets import Preset
from .sse import sse_lines, sse_objects
from .thinking import ThinkSplitter
from .types import ChatEvent, Final, Health, Message, ModelInfo, ReasoningDelta, ToolCallDelta, Usage


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    first_token: float = 60.0  # also the longest silence tolerated mid-stream (a read timeout)
    total: float = 300.0


# (base URL, key, timeouts, headers, id(loop)) -> (loop, AsyncOpenAI); holding the loop keeps its id unique
_CLIENTS: dict[tuple[Any, ...], tuple[Any, Any]] = {}
_CLOSING: set[Any] = set()  # tasks closing the clients of finished loops


def shared_client(base_url: str, key: str, timeouts: Timeouts, headers: dict[str, str] | None = None) -> Any:
    """One AsyncOpenAI per (base URL, key, timeouts, headers) and event loop: connection pools are
    reused across calls but never across loops (a pooled connection belongs to the loop that opened
    it; reusing it from a second `asyncio.run` fails with "Event loop is closed")."""
    import openai

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    ck = (base_url, key, timeouts.connect, timeouts.first_token, timeouts.total,
          tuple(sorted((headers or {}).items())), id(loop))
    entry = _CLIENTS.get(ck)
    if entry is not None:
        return entry[1]
    _drop_finished_loops(loop)
    client = openai.AsyncOpenAI(
        api_key=key or "not-needed",
        base_url=base_url,
        max_retries=0,
        timeout=openai.Timeout(timeouts.total, connect=timeouts.connect, read=timeouts.first_token),
        default_headers=headers or None,
    )
    _CLIENTS[ck] = (loop, client)
    return client


def _drop_finished_loops(current: Any) -> None:
    """Forget clients whose loop is closed; mark them closed from the current loop, quietly."""
    for k in [k for k, (lp, _) in _CLIENTS.items() if lp is not None and lp.is_closed()]:
        _, client = _CLIENTS.pop(k)
        if current is not None:
            task = current.create_task(_close_quietly(client))
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)


async def _close_quietly(client: Any) -> None:
    try:
        await client.close()  # marks it closed (no noisy __del__ later) even if its sockets' loop is gone
    except Exception:
        pass


def alternate_roles(messages: list[Message]) -> list[Message]:
    """ERNIE needs strict user/assistant alternation: merge same-role neighbours, start with user."""
    out: list[Message] = []
    for m in messages:
        role = m.get("role")
        if role in ("user", "assistant") and out and out[-1].get("role") == role and not m.get("tool_calls") \
                and not out[-1].get("tool_calls"):
            prev = dict(out[-1])
            prev["content"] = f"{prev.get('content') or ''}\n\n{m.get('content') or ''}".strip()
            out[-1] = prev
            continue
        out.append(dict(m))
    # the first non-system turn must be the user's
    while True:
        idx = next((i for i, m in enumerate(out) if m.get("role") != "system"), None)
        if idx is None or out[idx].get("role") != "assistant":
            break
        out.pop(idx)
    return out


class OpenAICompatProvider:
    transport = "openai"

    def __init__(self, preset: Preset, *, api_key: str | None, timeouts: Timeouts | None = None) -> None:
        self.preset = preset
        self.name = preset.name
        self.default_model = preset.default_model
        self._key = api_key or ""
        self.timeouts = timeouts or Timeouts()
        self._discovered_model: str | None = None

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        return shared_client(self.preset.base_url, self._key, self.timeouts, dict(self.preset.headers))

    async def resolve_model(self, model: str | None) -> str:
        if model:
            return model
        if self.default_model:
            return self.default_model
        if self._discovered_model is None:
            models = await self.list_models()
            if not models:
                raise E.BadRequest("no model configured and the server lists none", provider=self.name)
            self._discovered_model = models[0].id
        return self._discovered_model

    def _request(self, messages: list[Message], model: str, stream: bool, tools: list[dict[str, Any]] | None,
                 opts: dict[str, Any]) -> dict[str, Any]:
        p = self.preset
        msgs = alternate_roles(messages) if p.strict_alternation else messages
        req: dict[str, Any] = {"model": model, "messages": msgs, "stream": stream}
        extra_body: dict[str, Any] = dict(opts.pop("extra_body", None) or {})
        for k in ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty",
                  "response_format", "tool_choice", "user"):
            if opts.get(k) is not None:
                req[k] = opts[k]
        if tools:
            req["tools"] = tools
            if p.tool_calls_switch:
                extra_body["tool_calls_switch"] = True
        if stream and p.include_usage:
            req["stream_options"] = {"include_usage": True}
        if p.thinking_off_nonstream and not stream and "enable_thinking" not in extra_body:
            extra_body["enable_thinking"] = False
        if extra_body:
            req["extra_body"] = extra_body
        return req

    # -- chat --------------------------------------------------------------------------------

    async def chat(
        self,
        messages: list[Message],
        *,
        model: str | None = None,
        stream: bool = True,
        tools: list[dict[str, Any]] | None = None,
        **opts: Any,
    ) -> AsyncIterator[ChatEvent]:
        events = self._chat(messages, model=model, stream=stream, tools=tools, **opts)
        try:
            async for ev in events:
                yield ev
        except E.ProviderError as e:
            raise e.scrub(self._key) from None  # servers echo the key in their own words
        finally:
            await events.aclose()

    async def _chat(
        self,
        messages: list[Message],
        *,
        model: str | None,
        stream: bool,
        tools: list[dict[str, Any]] | None,
        **opts: Any,
    ) -> AsyncIterator[ChatEvent]:
        import openai

        model_id = await self.resolve_model(model)
        req = self._request(messages, model_id, stream, tools, dict(opts))
        deadline = time.monotonic() + self.timeouts.total
        try:
            raw = await self.client.chat.completions.with_raw_response.create(**req)
        except openai.APIStatusError as e:
            raise self._status_error(e) from None
        except openai.APITimeoutError:
            raise E.Timeout("no response within the time limit", provider=self.name) from None
        except openai.APIConnectionError as e:
            raise E.ProviderUnavailable(f"cannot reach {self.preset.base_url}: {e}", provider=self.name) from None

        request_id = raw.headers.get("x-request-id") or raw.headers.get("request-id")
        ctype = raw.headers.get("content-type", "")
        if stream and "json" in ctype and "event-stream" not in ctype:
            # A 200 with a JSON body where a stream was expected: Spark-style error (one-api's empty reply).
            body = _json_or_none(await raw.http_response.aread())
            err = E.error_from_body(body, provider=self.name, http_status=raw.status_code, request_id=request_id)
            if err:
                raise err
            raise E.ProviderUnavailable("expected an event stream, got JSON", provider=self.name,
                                        request_id=request_id)
        if not stream:
            async for ev in self._one_shot(raw, model_id, request_id):
                yield ev
            return
        response = raw.http_response
        events = self._stream(sse_objects(sse_lines(response.aiter_bytes())), model_id, request_id, deadline)
        try:
            async for ev in events:
                yield ev
        finally:  # a consumer that stops early (or an error) must give the connection back to the pool
            await events.aclose()
            try:
                await response.aclose()
            except Exception:
                pass

    async def _one_shot(self, raw: Any, model_id: str, request_id: str | None) -> AsyncIterator[ChatEvent]:
        body = _json_or_none(await raw.http_response.aread())
        err = E.error_from_body(body, provider=self.name, http_status=raw.status_code, request_id=request_id)
        if err:
            raise err
        if not isinstance(body, dict) or not body.get("choices"):
            raise E.ProviderUnavailable("response without choices", provider=self.name, request_id=request_id)
        rid = request_id or body.get("id") or body.get("sid")
        try:  # a body of the wrong shape is the server's fault: a ProviderError, not an AttributeError
            events, finish, usage = _parse_completion(body)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError):
            raise E.ProviderUnavailable("malformed response body", provider=self.name, request_id=rid) from None
        for ev in events:
            yield ev
        if finish == "content_filter":
            raise E.ContentFiltered("finish_reason=content_filter", provider=self.name, request_id=rid)
        yield Final(finish, usage, rid, self.name, body.get("model") or model_id)

    async def _stream(self, chunks: AsyncIterator[dict[str, Any]], model_id: str, request_id: str | None,
                      deadline: float) -> AsyncIterator[ChatEvent]:
        """Events from the decoded chunks (plain dicts, see providers/sse.py) of a chat stream."""
        splitter = ThinkSplitter()
        finish: str | None = None
        usage: Usage | None = None
        rid = request_id
        check_code = self.preset.check_body_code
        monotonic = time.monotonic
        try:
            async for chunk in chunks:
                # errors inside a 200 stream: Spark `code`, or an `error` member
                if chunk.get("error") or (check_code and chunk.get("code") not in (None, 0)):
                    err = E.error_from_body({**chunk, "sid": chunk.get("sid") or rid}, provider=self.name,
                                            http_status=200, request_id=rid)
                    if err:
                        raise err
                if rid is None:
                    rid = chunk.get("sid") or chunk.get("id") or None
                u = chunk.get("usage")
                if u:
                    usage = _usage(u)
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta")
                    if delta:
                        content = delta.get("content")
                        if content:
                            for ev in splitter.feed(content):
                                yield ev
                        r = delta.get("reasoning_content") or delta.get("reasoning")
                        if r:
                            yield ReasoningDelta(r)
                        tool_calls = delta.get("tool_calls")
                        if tool_calls:
                            for tc in tool_calls:
                                fn = tc.get("function") or {}
                                index = tc.get("index")
                                yield ToolCallDelta(index if index is not None else 0, tc.get("id"), fn.get("name"),
                                                    _arguments(fn.get("arguments")))
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                if monotonic() > deadline:
                    raise E.Timeout("the reply took longer than the total time limit", provider=self.name,
                                    request_id=rid)
        except E.ProviderError:
            raise
        except Exception as e:  # httpx transport errors, or a chunk of the wrong shape
            raise _transport_error(e, self.name, rid) from None
        for ev in splitter.flush():
            yield ev
        if finish is None and usage is None:
            raise E.ProviderUnavailable("the stream ended before the reply was complete", provider=self.name,
                                        request_id=rid)
        if finish == "content_filter":
            raise E.ContentFiltered("finish_reason=content_filter", provider=self.name, request_id=rid)
        yield Final(finish or "stop", usage, rid, self.name, model_id)

    def _status_error(self, e: Any) -> E.ProviderError:
        status = getattr(e, "status_code", None) or 500
        headers = getattr(getattr(e, "response", None), "headers", None)
        retry_after = E.parse_retry_after(headers)
        rid = getattr(e, "request_id", None)
        body = getattr(e, "body", None)
        try:  # the SDK hands over only the inner `error`; the whole body also has the request id
            full = e.response.json()
        except Exception:
            full = None
        if isinstance(full, dict):
            body = full
        if isinstance(body, dict):
            wrapped = body if ("error" in body or "code" in body or body.get("object") == "error") else {"error": body}
            err = E.error_from_body(wrapped, provider=self.name, http_status=status, request_id=rid,
                                    retry_after=retry_after)
            if err is not None:
                # the HTTP status decides when the body code is unknown to us
                if type(err) is E.BadRequest and status != 400 and status not in (404, 422):
                    return E.from_status(status, err.message, provider=self.name, code=err.code, request_id=rid,
                                         retry_after=retry_after)
                return err
        return E.from_status(status, str(getattr(e, "message", "")), provider=self.name, request_id=rid,
                             retry_after=retry_after)

    # -- other endpoints ---------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        import openai

        if self.preset.models and not self.preset.local:
            return [ModelInfo(m) for m in self.preset.models]
        try:
            page = await self.client.models.list()
        except openai.APIStatusError as e:
            raise self._status_error(e).scrub(self._key) from None
        except openai.APIError as e:
            raise E.ProviderUnavailable(str(e), provider=self.name).scrub(self._key) from None
        return [ModelInfo(m.id, getattr(m, "owned_by", None)) for m in page.data]

    async def health(self) -> Health:
        """A tiny real request: one token."""
        t0 = time.perf_counter()
        try:
            async for _ in self.chat([{"role": "user", "content": "ping"}], stream=False, max_tokens=1):
                pass
        except E.ProviderError as e:
            status = {"auth": "auth", "rate_limited": "rate_limited", "unavailable": "unreachable",
                      "timeout": "unreachable"}.get(e.kind, "error")
            return Health(False, status, (time.perf_counter() - t0) * 1000, e.user_message())
        return Health(True, "ok", (time.perf_counter() - t0) * 1000)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        for key in [k for k, (lp, _) in _CLIENTS.items() if k[0] == self.preset.base_url and lp is loop]:
            _, client = _CLIENTS.pop(key)
            await client.close()
        _drop_finished_loops(loop)


def _parse_completion(body: dict[str, Any]) -> tuple[list[ChatEvent], str | None, Usage | None]:
    """Events, finish reason and usage of a non-streamed completion body."""
    choice = body["choices"][0]
    msg = choice.get("message") or {}
    events: list[ChatEvent] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if reasoning:
        events.append(ReasoningDelta(str(reasoning)))
    splitter = ThinkSplitter()
    events += splitter.feed(msg.get("content") or "")
    events += splitter.flush()
    for i, tc in enumerate(msg.get("tool_calls") or []):
        fn = tc.get("function") or {}
        events.append(ToolCallDelta(i, tc.get("id"), fn.get("name"), _arguments(fn.get("arguments"))))
    return events, choice.get("finish_reason"), _usage(body.get("usage"))


def _arguments(args: Any) -> str:
    """Tool arguments as a JSON string: Ollama sends an object, some servers send nothing."""
    if args is None:
        return ""
    return args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


def _usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    return Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def _transport_error(e: Exception, provider: str, rid: str | None) -> E.ProviderError:
    name = type(e).__name__.lower()
    if "timeout" in name:
        return E.Timeout(f"the stream stalled: {type(e).__name__}", provider=provider, request_id=rid)
    if isinstance(e, (ValueError, TypeError, AttributeError, KeyError)):  # garbage JSON in a `data:` line
        return E.ProviderUnavailable(f"malformed event in the stream: {type(e).__name__}", provider=provider,
                                     request_id=rid)
    return E.ProviderUnavailable(f"the connection broke mid-stream: {type(e).__name__}", provider=provider,
                                 request_id=rid)
