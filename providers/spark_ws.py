"""iFlytek Spark's classic WebSocket API: HMAC-SHA256 signed URL, one request per connection,
frames with header.status 0/1/2, usage on the last frame, header.code errors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from . import errors as E
from .presets import Preset
from .types import ChatEvent, Final, Health, Message, ModelInfo, TextDelta, Usage

# URL path → `domain` parameter (the doc's table)
DOMAINS = {
    "/v1.1/chat": "lite", "/v3.1/chat": "generalv3", "/chat/pro-128k": "pro-128k", "/v3.5/chat": "generalv3.5",
    "/chat/max-32k": "max-32k", "/v4.0/chat": "4.0Ultra",
}


def rfc1123(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, UTC), usegmt=True)


def sign(host: str, date: str, path: str, api_key: str, api_secret: str, method: str = "GET") -> tuple[str, str]:
    """Return (signature, authorization) for the signing string of the Spark docs."""
    origin = f"host: {host}\ndate: {date}\n{method} {path} HTTP/1.1"
    digest = hmac.new(api_secret.encode(), origin.encode(), hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode()
    auth_origin = (f'api_key="{api_key}", algorithm="hmac-sha256", headers="host date request-line", '
                   f'signature="{signature}"')
    return signature, base64.b64encode(auth_origin.encode()).decode()


def signed_url(url: str, api_key: str, api_secret: str, now: float) -> str:
    parts = urlsplit(url)
    host = parts.netloc
    date = rfc1123(now)
    _, authorization = sign(host, date, parts.path, api_key, api_secret)
    return f"{url}?{urlencode({'authorization': authorization, 'date': date, 'host': host})}"


class SparkWSProvider:
    transport = "spark_ws"

    def __init__(self, preset: Preset, *, app_id: str, api_key: str, api_secret: str,
                 clock: Callable[[], float] = time.time, connect_timeout: float = 5.0,
                 read_timeout: float = 60.0) -> None:
        self.preset = preset
        self.name = preset.name
        self.default_model = preset.default_model
        self.app_id, self._key, self._secret = app_id, api_key, api_secret
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def _domain(self, model: str | None) -> str:
        if model:
            return model
        return DOMAINS.get(urlsplit(self.preset.base_url).path, self.default_model)

    async def chat(self, messages: list[Message], *, model: str | None = None, stream: bool = True,
                   tools: list[dict[str, Any]] | None = None, **opts: Any) -> AsyncIterator[ChatEvent]:
        import asyncio

        import websockets
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

        url = signed_url(self.preset.base_url, self._key, self._secret, self.clock())
        domain = self._domain(model)
        text = [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages
                if m.get("role") in ("system", "user", "assistant")]
        chat_params: dict[str, Any] = {"domain": domain, "max_tokens": int(opts.get("max_tokens") or 2048)}
        if opts.get("temperature") is not None:
            chat_params["temperature"] = float(opts["temperature"])
        frame = {"header": {"app_id": self.app_id, "uid": str(opts.get("user") or "studybot")[:32]},
                 "parameter": {"chat": chat_params}, "payload": {"message": {"text": text}}}
        sid: str | None = None
        usage: Usage | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                ws = await websockets.connect(url, open_timeout=self.connect_timeout, max_size=2**22)
        except InvalidStatus as e:
            status = e.response.status_code
            body = e.response.body.decode(errors="replace") if e.response.body else ""
            raise E.from_status(status, body or "handshake refused", provider=self.name).scrub(
                self._key, self._secret) from None
        except (TimeoutError, OSError, InvalidHandshake) as e:  # refused, timed out, or not a WebSocket answer
            raise E.ProviderUnavailable(f"cannot connect: {type(e).__name__}", provider=self.name) from None
        try:
            await ws.send(json.dumps(frame, ensure_ascii=False))
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), self.read_timeout)
                except TimeoutError:
                    raise E.Timeout("no frame within the read timeout", provider=self.name, request_id=sid) from None
                except ConnectionClosed:
                    raise E.ProviderUnavailable("connection closed before the last frame", provider=self.name,
                                                request_id=sid) from None
                try:  # a malformed frame is the provider's fault, not a crash of ours
                    header, texts, u, last = _parse_frame(raw)
                except (ValueError, TypeError, AttributeError):
                    raise E.ProviderUnavailable("malformed frame from the server", provider=self.name,
                                                request_id=sid) from None
                sid = header.get("sid") or sid
                code = header.get("code", 0)
                if code:
                    raise E.from_code(code, str(header.get("message", "")), provider=self.name, http_status=200,
                                      request_id=sid).scrub(self._key, self._secret)
                for t in texts:
                    yield TextDelta(t)
                if u:
                    usage = u
                if last:
                    break
        finally:
            await ws.close()
        yield Final("stop", usage, sid, self.name, domain)

    async def health(self) -> Health:
        t0 = time.perf_counter()
        try:
            async for _ in self.chat([{"role": "user", "content": "ping"}], max_tokens=1):
                pass
        except E.ProviderError as e:
            return Health(False, "auth" if e.kind == "auth" else "unreachable", (time.perf_counter() - t0) * 1e3,
                          e.user_message())
        return Health(True, "ok", (time.perf_counter() - t0) * 1e3)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(m) for m in self.preset.models]

    async def aclose(self) -> None:
        return None


def _parse_frame(raw: str | bytes) -> tuple[dict[str, Any], list[str], Usage | None, bool]:
    """(header, text pieces, usage, is_last) of one response frame; ValueError/TypeError/AttributeError if malformed."""
    msg = json.loads(raw)
    if not isinstance(msg, dict):
        raise ValueError("frame is not a JSON object")
    header = msg.get("header") or {}
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    payload = msg.get("payload") or {}
    choices = payload.get("choices") or {}
    texts = [str(t["content"]) for t in choices.get("text") or [] if t.get("content")]
    u = (payload.get("usage") or {}).get("text")
    usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)) if u else None
    return header, texts, usage, header.get("status") == 2 or choices.get("status") == 2
