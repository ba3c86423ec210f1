"""Spark's classic WebSocket API: URL signing (official vector), then real WebSocket calls
against a loopback stub that checks the signature and the clock like Spark does."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import replace
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from providers import errors as E
from providers.presets import PRESETS
from providers.spark_ws import SparkWSProvider, rfc1123, sign, signed_url
from providers.types import Final, TextDelta, collect
from tests.stubs.spark_ws_stub import (
    SparkWSStub,
    WSScript,
    answer,
    close_early,
    error_frame,
    expected_signature,
    text_frame,
)

# Official values from iFlytek's "general URL authentication" documentation.
DOC_HOST = "spark-api.xf-yun.com"
DOC_DATE = "Fri, 05 May 2023 10:43:39 GMT"
DOC_PATH = "/v1.1/chat"
DOC_SECRET = "MjlmNzkzNmZkMDQ2OTc0ZDdmNGE2ZTZi"
DOC_KEY = "addd2272b6d8b7c8abdd79531420ca3b"
DOC_SIGNATURE = "z5gHdu3pxVV4ADMyk467wOWDQ9q6BQzR3nfMTjc/DaQ="
DOC_AUTHORIZATION = (
    "YXBpX2tleT0iYWRkZDIyNzJiNmQ4YjdjOGFiZGQ3OTUzMTQyMGNhM2IiLCBhbGdvcml0aG09ImhtYWMtc2hhMjU2IiwgaGVhZGVycz0i"
    "aG9zdCBkYXRlIHJlcXVlc3QtbGluZSIsIHNpZ25hdHVyZT0iejVnSGR1M3B4VlY0QURNeWs0Njd3T1dEUTlxNkJRelIzbmZNVGpjL0RhUT0i"
)
POST_SIGNATURE = "SFd0y1XlQwsvdK2a0Xyo3wKmfsUovlavQOFPYiWanfw="  # same inputs, POST request-line
DOC_NOW = parsedate_to_datetime(DOC_DATE).timestamp()

APP_ID = "stubapp1"
KEY = "stub-ws-key-0123456789"
SECRET = "stub-ws-secret-abcdefghijklmnop"
NOW = 1_750_000_000.0
MSGS = [{"role": "system", "content": "你是学伴。"}, {"role": "user", "content": "你好"}]


# ---- signing --------------------------------------------------------------------------------------

def test_official_vector_get() -> None:
    signature, authorization = sign(DOC_HOST, DOC_DATE, DOC_PATH, DOC_KEY, DOC_SECRET)
    assert signature == DOC_SIGNATURE
    assert authorization == DOC_AUTHORIZATION
    assert base64.b64decode(authorization).decode() == (
        f'api_key="{DOC_KEY}", algorithm="hmac-sha256", headers="host date request-line", '
        f'signature="{DOC_SIGNATURE}"'
    )


def test_post_variant_signs_the_method() -> None:
    signature, authorization = sign(DOC_HOST, DOC_DATE, DOC_PATH, DOC_KEY, DOC_SECRET, method="POST")
    assert signature == POST_SIGNATURE
    assert signature != DOC_SIGNATURE
    assert POST_SIGNATURE in base64.b64decode(authorization).decode()


def test_stub_uses_the_same_algorithm_as_the_docs() -> None:
    # the stub's verifier is itself pinned to the official vector, so it cannot agree with a wrong client
    assert expected_signature(DOC_HOST, DOC_DATE, "GET", DOC_PATH, DOC_SECRET) == DOC_SIGNATURE


def test_rfc1123_date() -> None:
    assert rfc1123(DOC_NOW) == DOC_DATE


def test_signed_url_query_encoding() -> None:
    url = signed_url(f"wss://{DOC_HOST}{DOC_PATH}", DOC_KEY, DOC_SECRET, DOC_NOW)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", DOC_HOST, DOC_PATH)
    # form-url-encoded, as in the docs' example URL
    assert "date=Fri%2C+05+May+2023+10%3A43%3A39+GMT" in parts.query
    assert f"host={DOC_HOST}" in parts.query
    q = {k: v[0] for k, v in parse_qs(parts.query, strict_parsing=True).items()}
    assert q == {"authorization": DOC_AUTHORIZATION, "date": DOC_DATE, "host": DOC_HOST}
    assert "=" not in parts.query.split("authorization=", 1)[1].split("&", 1)[0]  # base64 padding is escaped


# ---- calls against the stub -----------------------------------------------------------------------

@pytest.fixture
async def stub() -> SparkWSStub:
    s = SparkWSStub(api_key=KEY, api_secret=SECRET, clock=lambda: NOW)
    await s.start()
    yield s
    await s.close()


def provider(stub: SparkWSStub, *, secret: str = SECRET, key: str = KEY, clock_skew: float = 0.0,
             read_timeout: float = 2.0) -> SparkWSProvider:
    preset = replace(PRESETS["spark_ws"], base_url=stub.url)
    return SparkWSProvider(preset, app_id=APP_ID, api_key=key, api_secret=secret,
                           clock=lambda: NOW + clock_skew, connect_timeout=2.0, read_timeout=read_timeout)


async def test_streamed_chat(stub: SparkWSStub) -> None:
    stub.script = answer(["你好，", "我是", "星火。"], sid="cht000cb0001@dx18b0", usage=(6, 9))
    events = [ev async for ev in provider(stub).chat(MSGS, temperature=0.3)]
    assert [ev.text for ev in events if isinstance(ev, TextDelta)] == ["你好，", "我是", "星火。"]
    final = events[-1]
    assert isinstance(final, Final) and sum(isinstance(ev, Final) for ev in events) == 1
    assert final.request_id == "cht000cb0001@dx18b0"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (6, 9)
    assert final.finish_reason == "stop"
    assert final.provider == "spark_ws" and final.model == "generalv3.5"
    # handshake was really verified, and the request frame has the documented shape
    assert [h.accepted for h in stub.handshakes] == [True]
    assert stub.handshakes[0].query["host"] == f"127.0.0.1:{stub.port}"
    frame = stub.frames[-1]
    assert frame["header"]["app_id"] == APP_ID
    assert frame["parameter"]["chat"]["domain"] == "generalv3.5"  # from the /v3.5/chat path
    assert frame["parameter"]["chat"]["temperature"] == 0.3
    assert frame["payload"]["message"]["text"] == MSGS


async def test_collect_joins_text(stub: SparkWSStub) -> None:
    stub.script = answer(["一", "二", "三", "四"], usage=(3, 4))
    reply = await collect(provider(stub).chat(MSGS))
    assert reply.text == "一二三四"
    assert reply.final is not None and reply.final.usage.total_tokens == 7


async def test_wrong_secret_is_auth_error(stub: SparkWSStub) -> None:
    with pytest.raises(E.AuthError) as ei:
        await collect(provider(stub, secret="not-the-secret-000000").chat(MSGS))
    err = ei.value
    assert err.http_status == 401 and not err.retryable
    assert "HMAC signature cannot be verified" in str(err)
    assert [h.reason for h in stub.handshakes] == ["signature mismatch"]
    assert stub.frames == []  # nothing got past the handshake
    assert SECRET not in str(err) and "not-the-secret" not in err.user_message()


async def test_unknown_key_is_auth_error(stub: SparkWSStub) -> None:
    with pytest.raises(E.AuthError):
        await collect(provider(stub, key="someone-elses-key").chat(MSGS))
    assert stub.handshakes[-1].reason == "fail to retrieve credential"


@pytest.mark.parametrize("skew", [301.0, -301.0, 3600.0])
async def test_stale_clock_is_auth_error(stub: SparkWSStub, skew: float) -> None:
    with pytest.raises(E.AuthError):
        await collect(provider(stub, clock_skew=skew).chat(MSGS))
    assert stub.handshakes[-1].reason == "date is outside the allowed clock skew"


async def test_clock_within_tolerance_is_accepted(stub: SparkWSStub) -> None:
    reply = await collect(provider(stub, clock_skew=-299.0).chat(MSGS))
    assert reply.text == "你好"


@pytest.mark.parametrize(
    ("code", "cls", "daily"),
    [
        (10013, E.ContentFiltered, False),
        (10014, E.ContentFiltered, False),
        (11200, E.AuthError, False),
        (11202, E.RateLimited, False),
        (11201, E.RateLimited, True),
        (10907, E.BadRequest, False),
        (10110, E.ProviderUnavailable, False),
    ],
)
async def test_error_frames(stub: SparkWSStub, code: int, cls: type[E.ProviderError], daily: bool) -> None:
    stub.script = error_frame(code, "AppIdNoAuthError:(11200)tokens.total", sid="cht000err@dx1")
    with pytest.raises(E.ProviderError) as ei:
        await collect(provider(stub).chat(MSGS))
    err = ei.value
    assert type(err) is cls
    assert err.code == code and err.request_id == "cht000err@dx1"
    if cls is E.RateLimited:
        assert err.daily is daily and err.retryable is (not daily)


async def test_error_frame_after_some_text(stub: SparkWSStub) -> None:
    stub.script = error_frame(10014, "output moderation", after=["好的，", "下面"])
    got: list[str] = []
    with pytest.raises(E.ContentFiltered):
        async for ev in provider(stub).chat(MSGS):
            if isinstance(ev, TextDelta):
                got.append(ev.text)
    assert got == ["好的，", "下面"]


@pytest.mark.parametrize("abort", [False, True], ids=["close-1000", "tcp-abort"])
async def test_early_close_is_unavailable(stub: SparkWSStub, abort: bool) -> None:
    stub.script = close_early(["半句", "话"], abort=abort)
    events: list[object] = []
    with pytest.raises(E.ProviderUnavailable) as ei:
        async for ev in provider(stub).chat(MSGS):
            events.append(ev)
    assert ei.value.retryable
    assert ei.value.request_id == "cht000cb0003@dx18b0"
    assert not any(isinstance(ev, Final) for ev in events)  # no Final: the reply is incomplete


async def test_close_right_after_request_is_unavailable(stub: SparkWSStub) -> None:
    stub.script = close_early([])
    with pytest.raises(E.ProviderUnavailable):
        await collect(provider(stub).chat(MSGS))


async def test_silent_server_times_out(stub: SparkWSStub) -> None:
    script = answer(["迟到"])
    script.frame_delay = 5.0
    stub.script = script
    with pytest.raises(E.Timeout):
        await asyncio.wait_for(collect(provider(stub, read_timeout=0.3).chat(MSGS)), 3.0)


async def test_nothing_listening_is_unavailable() -> None:
    s = SparkWSStub(api_key=KEY, api_secret=SECRET, clock=lambda: NOW)
    await s.start()
    url = s.url
    await s.close()
    preset = replace(PRESETS["spark_ws"], base_url=url)
    p = SparkWSProvider(preset, app_id=APP_ID, api_key=KEY, api_secret=SECRET, clock=lambda: NOW,
                        connect_timeout=1.0)
    with pytest.raises(E.ProviderUnavailable):
        await collect(p.chat(MSGS))


async def test_one_connection_per_request(stub: SparkWSStub) -> None:
    stub.script = [answer(["第一"]), answer(["第二"])]
    p = provider(stub)
    assert (await collect(p.chat(MSGS))).text == "第一"
    assert (await collect(p.chat(MSGS))).text == "第二"
    assert len(stub.handshakes) == 2 and len(stub.frames) == 2


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", '{"header": "oops"}'])
async def test_malformed_frame_is_a_provider_error(stub: SparkWSStub, garbage: str) -> None:
    stub.script = WSScript([text_frame("前半", 0, sid="cht000bad@dx1"), garbage])
    with pytest.raises(E.ProviderUnavailable):
        await collect(provider(stub).chat(MSGS))


async def test_server_hanging_up_during_handshake_is_unavailable() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        preset = replace(PRESETS["spark_ws"], base_url=f"ws://127.0.0.1:{port}/v3.5/chat")
        p = SparkWSProvider(preset, app_id=APP_ID, api_key=KEY, api_secret=SECRET, clock=lambda: NOW,
                            connect_timeout=1.0)
        with pytest.raises(E.ProviderUnavailable):
            await collect(p.chat(MSGS))
    finally:
        server.close()
        await server.wait_closed()


async def test_stub_refuses_a_host_that_was_not_signed(stub: SparkWSStub) -> None:
    """Signed for Spark's real host but sent to loopback: the stub (like Spark) refuses it with JSON."""
    import websockets
    from websockets.exceptions import InvalidStatus

    signed = signed_url(f"wss://{DOC_HOST}/v3.5/chat", KEY, SECRET, NOW)
    url = signed.replace(f"wss://{DOC_HOST}", f"ws://127.0.0.1:{stub.port}", 1)
    with pytest.raises(InvalidStatus) as ei:
        await websockets.connect(url, open_timeout=2)
    resp = ei.value.response
    assert resp.status_code == 401
    assert resp.headers["Content-Type"].startswith("application/json")
    assert json.loads(resp.body)["message"].startswith("HMAC signature cannot be verified")
    assert stub.handshakes[-1].reason == "enforced header 'host' not used for signature creation"
