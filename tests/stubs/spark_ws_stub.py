"""A loopback stand-in for iFlytek Spark's classic WebSocket chat API.

The handshake is checked the way Spark checks it: the `authorization`, `date` and `host`
query parameters must be present, `host` must be the Host header the client sent, the
date must be within `max_skew` seconds of the stub's INJECTED clock, and the signature
must be HMAC-SHA256(APISecret, "host: …\\ndate: …\\nGET <path> HTTP/1.1"), base64, inside
a base64 `api_key="…", algorithm="hmac-sha256", headers="host date request-line",
signature="…"` string. Anything else is refused with HTTP 401 and a JSON body.

After the handshake the stub reads one request frame, records it, and plays a scripted
answer: status 0/1/2 frames with usage on the last, an error frame (header.code ≠ 0,
status 2, no payload), or a close before the last frame.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

MAX_SKEW = 300.0  # seconds, as the Spark docs say

_AUTH_RE = re.compile(
    r'^(?:api_key|hmac username)="(?P<key>[^"]*)", algorithm="(?P<alg>[^"]*)", '
    r'headers="(?P<headers>[^"]*)", signature="(?P<sig>[^"]*)"$'
)


def expected_signature(host: str, date: str, method: str, path: str, api_secret: str) -> str:
    origin = f"host: {host}\ndate: {date}\n{method} {path} HTTP/1.1"
    return base64.b64encode(hmac.new(api_secret.encode(), origin.encode(), hashlib.sha256).digest()).decode()


# ---- scripted answers ----------------------------------------------------------------------------


@dataclass
class WSScript:
    frames: list[dict[str, Any] | str]  # a str is sent as is (for malformed frames)
    close: str = "normal"  # normal (after the frames) | early (1000 before status 2) | abort (no close frame)
    frame_delay: float = 0.0


def text_frame(piece: str, status: int, *, sid: str, seq: int = 0) -> dict[str, Any]:
    return {
        "header": {"code": 0, "message": "Success", "sid": sid, "status": status},
        "payload": {"choices": {"status": status, "seq": seq,
                                "text": [{"content": piece, "role": "assistant", "index": 0}]}},
    }


def answer(pieces: list[str], *, sid: str = "cht000cb0001@dx18b0", usage: tuple[int, int] = (6, 9)) -> WSScript:
    """status 0 (first), 1 (middle)…, 2 (last, with usage), one text piece per frame."""
    frames: list[dict[str, Any] | str] = []
    for i, piece in enumerate(pieces):
        status = 2 if i == len(pieces) - 1 else (0 if i == 0 else 1)
        frame = text_frame(piece, status, sid=sid, seq=i)
        if status == 2:
            frame["payload"]["usage"] = {"text": {"question_tokens": usage[0], "prompt_tokens": usage[0],
                                                  "completion_tokens": usage[1], "total_tokens": sum(usage)}}
        frames.append(frame)
    return WSScript(frames)


def error_frame(code: int, message: str = "", *, sid: str = "cht000cb0002@dx18b0",
                after: tuple[str, ...] | list[str] = ()) -> WSScript:
    """Optionally some text frames (status 0/1), then `{"header":{"code":…,"status":2}}` with no payload."""
    frames: list[dict[str, Any] | str] = [text_frame(p, 0 if i == 0 else 1, sid=sid, seq=i)
                                          for i, p in enumerate(after)]
    frames.append({"header": {"code": code, "message": message or f"error {code}", "sid": sid, "status": 2}})
    return WSScript(frames)


def close_early(pieces: list[str], *, abort: bool = False, sid: str = "cht000cb0003@dx18b0") -> WSScript:
    """Text frames with status 0/1 only, then a close (or a dropped TCP connection) instead of status 2."""
    frames: list[dict[str, Any] | str] = [text_frame(p, 0 if i == 0 else 1, sid=sid, seq=i)
                                          for i, p in enumerate(pieces)]
    return WSScript(frames, close="abort" if abort else "early")


# ---- the server ----------------------------------------------------------------------------------


@dataclass
class Handshake:
    path: str
    query: dict[str, str]
    host_header: str | None
    accepted: bool
    reason: str = ""


@dataclass
class SparkWSStub:
    api_key: str
    api_secret: str
    clock: Callable[[], float]  # injected: the stub's idea of "now", in epoch seconds
    script: WSScript | list[WSScript] = field(default_factory=lambda: answer(["你好"]))
    max_skew: float = MAX_SKEW
    path: str = "/v3.5/chat"
    handshakes: list[Handshake] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)  # request frames received
    port: int = 0
    _server: Server | None = None
    _served: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> SparkWSStub:
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._check)
        self.port = self._server.sockets[0].getsockname()[1]  # type: ignore[index]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                pass

    async def __aenter__(self) -> SparkWSStub:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- handshake ------------------------------------------------------------------------------

    def _verify(self, request: Request) -> str:
        """Return "" when the signature checks out, else why not."""
        parts = urlsplit(request.path)
        raw = parse_qs(parts.query, keep_blank_values=True)
        q = {k: v[0] for k, v in raw.items()}
        for name in ("authorization", "date", "host"):
            if not q.get(name):
                return f"missing {name}"
        if q["host"] != request.headers.get("Host"):
            return "enforced header 'host' not used for signature creation"
        try:
            when = parsedate_to_datetime(q["date"]).timestamp()
        except (TypeError, ValueError):
            return "date is not RFC1123"
        if abs(when - self.clock()) > self.max_skew:
            return "date is outside the allowed clock skew"
        try:
            origin = base64.b64decode(q["authorization"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "authorization is not base64"
        m = _AUTH_RE.match(origin)
        if not m:
            return "authorization does not conform to the format"
        if m["key"] != self.api_key:
            return "fail to retrieve credential"
        if m["alg"] != "hmac-sha256" or m["headers"] != "host date request-line":
            return "unsupported algorithm or headers"
        want = expected_signature(q["host"], q["date"], "GET", parts.path, self.api_secret)
        if not hmac.compare_digest(m["sig"], want):
            return "signature mismatch"
        return ""

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        reason = self._verify(request)
        parts = urlsplit(request.path)
        self.handshakes.append(Handshake(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()},
                                         request.headers.get("Host"), not reason, reason))
        if not reason:
            return None
        body = json.dumps({"message": f"HMAC signature cannot be verified: {reason}"})
        resp = connection.respond(401, body)
        headers = Headers([(k, v) for k, v in resp.headers.raw_items() if k.lower() != "content-type"])
        headers["Content-Type"] = "application/json; charset=utf-8"
        return Response(resp.status_code, resp.reason_phrase, headers, resp.body)

    # -- one request per connection ----------------------------------------------------------------

    def _next_script(self) -> WSScript:
        if isinstance(self.script, WSScript):
            return self.script
        i = min(self._served, len(self.script) - 1)
        return self.script[i]

    async def _handler(self, ws: ServerConnection) -> None:
        script = self._next_script()
        self._served += 1
        raw = await ws.recv()
        self.frames.append(json.loads(raw))
        for frame in script.frames:
            if script.frame_delay:  # a pause that ends early if the client or the server closes
                try:
                    await asyncio.wait_for(ws.wait_closed(), script.frame_delay)
                    return
                except TimeoutError:
                    pass
            await ws.send(frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False))
        if script.close == "abort":
            ws.transport.abort()
            return
        await ws.close()  # Spark closes after the last frame; "early" just never sent status 2
