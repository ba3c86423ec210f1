"""A small scripted HTTP/1.1 server on loopback for tests and benchmarks.

Speaks real HTTP over a real socket (keep-alive, chunked streaming), so any client
(the openai SDK on httpx2, httpx, websockets' handshake fallbacks) is tested for real.
Faults: delays before the first byte, between chunks, a reset mid-stream, a stall.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] | None = None  # streamed with chunked transfer encoding
    first_delay: float = 0.0  # before the status line
    chunk_delay: float = 0.0  # between chunks
    reset_after: int | None = None  # abort the connection after this many chunks
    stall_after: int | None = None  # stop sending (but keep the socket) after this many chunks

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
        return cls(status, json.dumps(obj, ensure_ascii=False).encode(),
                   {"content-type": "application/json", **(headers or {})}, **kw)

    @classmethod
    def text(cls, text: str, status: int = 200, ctype: str = "text/html; charset=utf-8", **kw: Any) -> Reply:
        return cls(status, text.encode(), {"content-type": ctype}, **kw)


Handler = Callable[[Request], "Reply | Awaitable[Reply]"]

_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}


class StubServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> StubServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server:
            self._server.close()
            # connections still open (stalled streams) would keep wait_closed() waiting
            self._server.close_clients() if hasattr(self._server, "close_clients") else None
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except TimeoutError:
                pass

    async def __aenter__(self) -> StubServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(n) if n else b""
                req = Request(method, target, headers, body)
                self.requests.append(req)
                reply = self.handler(req)
                if asyncio.iscoroutine(reply) or isinstance(reply, Awaitable):
                    reply = await reply  # type: ignore[misc]
                if not await self._write(writer, reply):  # type: ignore[arg-type]
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            return  # the test is over or the client went away
        finally:
            if not writer.is_closing():
                writer.close()

    async def _write(self, writer: asyncio.StreamWriter, r: Reply) -> bool:
        if r.first_delay:
            await asyncio.sleep(r.first_delay)
        head = [f"HTTP/1.1 {r.status} {_REASONS.get(r.status, 'Status')}"]
        hdrs = {k.lower(): v for k, v in r.headers.items()}
        if r.chunks is None:
            hdrs["content-length"] = str(len(r.body))
        else:
            hdrs["transfer-encoding"] = "chunked"
        hdrs.setdefault("connection", "keep-alive")
        head += [f"{k}: {v}" for k, v in hdrs.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if r.chunks is None:
            writer.write(r.body)
            await writer.drain()
            return True
        for i, chunk in enumerate(r.chunks):
            if r.reset_after is not None and i >= r.reset_after:
                await writer.drain()
                writer.transport.abort()
                return False
            if r.stall_after is not None and i >= r.stall_after:
                await writer.drain()
                await asyncio.sleep(3600)
            if r.chunk_delay and i:
                await asyncio.sleep(r.chunk_delay)
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if r.chunk_delay or i == 0:
                await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


class Script:
    """Replies in order per path (the last one repeats); records what was asked."""

    def __init__(self, routes: dict[str, list[Reply] | Callable[[Request], Reply]] | None = None) -> None:
        self.routes = routes or {}
        self.counts: dict[str, int] = {}

    def __call__(self, req: Request) -> Reply:
        for prefix, replies in self.routes.items():
            if req.path.endswith(prefix) or req.path == prefix:
                if callable(replies):
                    return replies(req)
                i = self.counts.get(prefix, 0)
                self.counts[prefix] = i + 1
                return replies[min(i, len(replies) - 1)]
        return Reply.json({"error": {"message": f"no route for {req.path}", "code": 404}}, 404)
