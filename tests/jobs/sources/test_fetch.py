"""The polite fetcher over real loopback HTTP: gap, cap, retries, cache, decoding."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest

from jobs.sources.fetch import DEFAULT_USER_AGENT, Fetcher, decode, host_of
from jobs.sources.types import FetchError
from tests.stubs.http_server import Reply, Request, Script, StubServer

from .conftest import VirtualClock, wait_until


async def test_requests_to_one_host_are_spaced_by_the_delay(clock: VirtualClock, make_fetcher) -> None:
    stamps: list[float] = []

    def handler(req: Request) -> Reply:
        stamps.append(clock.now)  # the virtual time at which the request reached the server
        return Reply.text("ok")

    async with StubServer(handler) as srv:
        f = make_fetcher(delay_s=1.0, concurrency=4)

        async def settle() -> None:
            await wait_until(lambda: len(srv.requests) >= f.stats.requests)

        clock.settle = settle
        start = clock.now
        await asyncio.gather(*(f.get(f"{srv.url}/p{i}") for i in range(12)))
    assert len(stamps) == 12
    gaps = [b - a for a, b in pairwise(stamps)]
    assert min(gaps) >= 1.0 - 1e-9
    assert clock.now - start == pytest.approx(11.0)  # and no slower than needed


async def test_the_gap_is_per_host(clock: VirtualClock, make_fetcher) -> None:
    stamps: dict[str, list[float]] = {"a": [], "b": []}

    def make(name: str):
        def handler(req: Request) -> Reply:
            stamps[name].append(clock.now)
            return Reply.text("ok")
        return handler

    async with StubServer(make("a")) as a, StubServer(make("b")) as b:
        f = make_fetcher(delay_s=2.0)

        async def settle() -> None:
            await wait_until(lambda: len(a.requests) + len(b.requests) >= f.stats.requests)

        clock.settle = settle
        await asyncio.gather(*(f.get(f"{s.url}/x{i}") for i in range(3) for s in (a, b)))
    assert stamps["a"][0] == stamps["b"][0]  # two hosts do not wait for each other
    for seq in stamps.values():
        assert [y - x for x, y in pairwise(seq)] == [2.0, 2.0]


async def test_concurrency_per_host_never_exceeds_the_cap(make_fetcher) -> None:
    cap = 3
    in_flight = 0
    peak = 0

    async def handler(req: Request) -> Reply:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            # hold the request until the cap is reached, so overlap shows if there is any
            for _ in range(2000):
                if in_flight >= cap:
                    break
                await asyncio.sleep(0)
            await asyncio.sleep(0)
            return Reply.text("ok")
        finally:
            in_flight -= 1

    async with StubServer(handler) as srv:
        f = make_fetcher(concurrency=cap)
        pages = await asyncio.gather(*(f.get(f"{srv.url}/c{i}") for i in range(15)))
    assert all(p.status == 200 for p in pages)
    assert peak == cap
    assert f.stats.max_in_flight[host_of(srv.url)] == cap


async def test_retries_503_then_succeeds(clock: VirtualClock, make_fetcher) -> None:
    script = Script({"/flaky": [Reply.text("busy", 503), Reply.text("fine")]})
    async with StubServer(script) as srv:
        f = make_fetcher(backoff_s=1.0)
        page = await f.get(srv.url + "/flaky")
    assert page.text == "fine"
    assert len(srv.requests) == 2
    assert f.stats.retries == 1
    assert len(clock.sleeps) == 1 and 1.0 <= clock.sleeps[0] <= 1.25  # backoff with jitter


@pytest.mark.parametrize("status", [403, 404])
async def test_no_retry_on_403_and_404(status: int, clock: VirtualClock, make_fetcher) -> None:
    async with StubServer(Script({"/gone": [Reply.text("no", status)]})) as srv:
        f = make_fetcher()
        with pytest.raises(FetchError) as ei:
            await f.get(srv.url + "/gone")
    assert ei.value.status == status and srv.url + "/gone" in str(ei.value)
    assert len(srv.requests) == 1 and clock.sleeps == []


async def test_gives_up_after_the_retries_allowed(clock: VirtualClock, make_fetcher) -> None:
    async with StubServer(Script({"/down": [Reply.text("down", 502)]})) as srv:
        f = make_fetcher(retries=3, backoff_s=1.0, backoff_max_s=3.0)
        with pytest.raises(FetchError) as ei:
            await f.get(srv.url + "/down")
    assert ei.value.status == 502
    assert len(srv.requests) == 4
    assert len(clock.sleeps) == 3 and clock.sleeps[0] < clock.sleeps[1] <= 3.0 and clock.sleeps[2] == 3.0


async def test_429_honours_retry_after_and_432_is_retried(clock: VirtualClock, make_fetcher) -> None:
    script = Script({"/slow": [Reply(429, b"slow down", {"Retry-After": "7"}), Reply.text("ok")],
                     "/renew": [Reply.text("renew", 432), Reply.text("ok")]})
    async with StubServer(script) as srv:
        f = make_fetcher(backoff_s=0.5)
        await f.get(srv.url + "/slow")
        await f.get(srv.url + "/renew")
    assert clock.sleeps[0] == 7.0
    assert len(srv.requests) == 4


async def test_status_not_raised_when_asked(make_fetcher) -> None:
    async with StubServer(Script({"/x": [Reply(302, b"", {"location": "https://passport.example/visitor"})]})) as srv:
        f = make_fetcher()
        page = await f.get(srv.url + "/x", follow_redirects=False, raise_for_status=False)
    assert page.status == 302 and page.location.startswith("https://passport")


async def test_connection_refused_is_retried_then_reported(clock: VirtualClock, make_fetcher) -> None:
    srv = await StubServer(Script()).start()
    url = srv.url + "/nothing"
    await srv.close()  # the port is now closed: connection refused on loopback
    f = make_fetcher(retries=2)
    with pytest.raises(FetchError) as ei:
        await f.get(url)
    assert ei.value.status is None and len(clock.sleeps) == 2


async def test_timeout_is_a_fetch_error(make_fetcher) -> None:
    async with StubServer(Script({"/stall": [Reply.text("late", first_delay=2.0)]})) as srv:
        f = make_fetcher(timeout_s=0.05, retries=0)
        with pytest.raises(FetchError, match="timeout"):
            await f.get(srv.url + "/stall")


async def test_disk_cache_by_url(tmp_path, make_fetcher) -> None:
    script = Script({"/page": [Reply.text("第一版")], "/err": [Reply.text("x", 404)]})
    async with StubServer(script) as srv:
        f = make_fetcher(cache_dir=tmp_path / "cache")
        assert (await f.get(srv.url + "/page", cache=True)).text == "第一版"
        again = await f.get(srv.url + "/page", cache=True)
        assert again.from_cache and again.text == "第一版"
        assert len(srv.requests) == 1 and f.stats.cache_hits == 1
        # a second fetcher on the same directory (a rerun) costs no request either
        g = make_fetcher(cache_dir=tmp_path / "cache")
        assert (await g.get(srv.url + "/page", cache=True)).from_cache
        f.forget(srv.url + "/page")
        assert not (await f.get(srv.url + "/page", cache=True)).from_cache
        assert len(srv.requests) == 2
        with pytest.raises(FetchError):
            await f.get(srv.url + "/err", cache=True)
        with pytest.raises(FetchError):
            await f.get(srv.url + "/err", cache=True)  # errors are never cached
        assert len(srv.requests) == 4
        await f.get(srv.url + "/page")  # cache=False: always asks
        assert len(srv.requests) == 5


async def test_identifiable_user_agent_unless_overridden(make_fetcher) -> None:
    async with StubServer(Script({"/": [Reply.text("ok")]})) as srv:
        f = make_fetcher()
        await f.get(srv.url + "/")
        await f.get(srv.url + "/", headers={"User-Agent": "Mozilla/5.0 test"})
    assert srv.requests[0].headers["user-agent"] == DEFAULT_USER_AGENT
    assert "studybot" in DEFAULT_USER_AGENT
    assert srv.requests[1].headers["user-agent"] == "Mozilla/5.0 test"


def test_decode_declared_and_fallback_charsets() -> None:
    text = "人民日报"
    assert decode(text.encode("utf-8")) == text
    gb = f'<meta http-equiv="Content-Type" content="text/html; charset=gb2312">{text}'.encode("gb18030")
    assert text in decode(gb)
    assert decode(text.encode("gb18030"), "text/html") == text  # undeclared, not UTF-8
    assert decode(b"\xff\xfe\x00bad", "text/html; charset=nonsense")  # never raises


async def test_from_settings_reads_fetch_settings(monkeypatch) -> None:
    from bot.config import load_settings

    monkeypatch.setenv("FETCH_DELAY_S", "2.5")
    monkeypatch.setenv("FETCH_CONCURRENCY", "2")
    f = Fetcher.from_settings(load_settings())
    assert f.delay_s == 2.5 and f.concurrency == 2
    assert f.cache_dir is not None and f.cache_dir.parts[-2:] == ("cache", "http")
    await f.aclose()
