"""The router (providers/router.py): fallback, retries, breaker, caps, records.

Pure router logic runs over scripted in-memory providers (the router is the unit); the
wire-level cases (Retry-After header, a Spark error in a 200 body, a stream that dies) run
over real loopback HTTP with the OpenAI-compatible transport. Time is injected: the clock
only moves when a test (or the fake sleep) moves it, and no test really sleeps.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from providers import errors as E
from providers.openai_compat import OpenAICompatProvider, Timeouts
from providers.presets import PRESETS
from providers.records import CallRecord
from providers.router import Attempt, RetryPolicy, Router
from providers.types import Final, ReasoningDelta, TextDelta, ToolCallDelta, Usage, collect
from tests.clocks import ManualClock
from tests.stubs.http_server import Reply, Script, StubServer
from tests.stubs.openai_wire import midstream_error, qianfan_error, spark_body_error, text_stream

MSGS = [{"role": "user", "content": "你好"}]


# ---- test doubles ---------------------------------------------------------------------------------


class Clock(ManualClock):
    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(start)


class Sleeper:
    """The router's `sleep`: records each requested delay and moves the clock, never waits."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, s: float) -> None:
        self.delays.append(s)
        self.clock.advance(s)

    @property
    def total(self) -> float:
        return sum(self.delays)


@dataclass
class Fail:
    """A scripted failure: a fresh exception per raise."""

    make: Callable[[], E.ProviderError]


@dataclass
class Tick:
    """Move the injected clock while streaming (to measure ttft/duration)."""

    s: float


@dataclass
class Yield:
    """Give other tasks a turn (n times) while holding the provider."""

    n: int = 5


def fail(cls: type[E.ProviderError], *args: Any, **kw: Any) -> Fail:
    return Fail(lambda: cls(*args, **kw))


class FakeProvider:
    """Implements the Provider protocol from a script: one list of steps per call, the last repeats."""

    def __init__(self, name: str, *scripts: list[Any], default_model: str = "fake-model",
                 clock: Clock | None = None) -> None:
        self.name = name
        self.default_model = default_model
        self.scripts = list(scripts) or [ok_script()]
        self.clock = clock
        self.calls: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = 0

    async def chat(self, messages: list[dict[str, Any]], *, model: str | None = None, stream: bool = True,
                   tools: list[dict[str, Any]] | None = None, **opts: Any) -> AsyncIterator[Any]:
        self.calls.append({"model": model, "stream": stream, "tools": tools, "opts": opts})
        steps = self.scripts[min(len(self.calls), len(self.scripts)) - 1]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for step in steps:
                if isinstance(step, Fail):
                    raise step.make()
                if isinstance(step, Tick):
                    assert self.clock is not None
                    self.clock.advance(step.s)
                elif isinstance(step, Yield):
                    for _ in range(step.n):
                        await asyncio.sleep(0)
                elif isinstance(step, Final):
                    yield replace(step, provider=self.name, model=model or self.default_model)
                else:
                    yield step
        finally:
            self.in_flight -= 1
            self.closed += 1

    async def health(self) -> Any:
        return None

    async def list_models(self) -> list[Any]:
        return []

    async def aclose(self) -> None:
        pass


def ok_script(*pieces: str, usage: tuple[int, int] | None = (5, 2)) -> list[Any]:
    pieces = pieces or ("你好", "！")
    return [*(TextDelta(p) for p in pieces), Final("stop", Usage(*usage) if usage else None, "req-1")]


@dataclass
class Rig:
    router: Router
    clock: Clock
    sleep: Sleeper
    records: list[CallRecord]
    trace: list[Attempt]

    async def ask(self, **kw: Any) -> str:
        self.trace.clear()
        reply = await collect(self.router.chat(MSGS, trace=self.trace, **kw))
        return reply.text

    def outcomes(self) -> list[tuple[str, str, str | None]]:
        return [(a.provider, a.outcome, a.error_kind) for a in self.trace]


def rig(*providers: FakeProvider, chain: list[str] | None = None, seed: int = 7, clock: Clock | None = None,
        **kw: Any) -> Rig:
    clock = clock or Clock()
    for p in providers:
        p.clock = p.clock or clock
    sleeper = Sleeper(clock)
    records: list[CallRecord] = []
    router = Router({p.name: p for p in providers}, chain or [p.name for p in providers], recorder=records.append,
                    clock=clock, wall_clock=lambda: 1_700_000_000.0, sleep=sleeper, rng=random.Random(seed), **kw)
    return Rig(router, clock, sleeper, records, [])


# ---- fallback -------------------------------------------------------------------------------------


async def test_first_provider_that_works_answers() -> None:
    a, b, c = FakeProvider("a"), FakeProvider("b", ok_script("B")), FakeProvider("c", ok_script("C"))
    r = rig(a, b, c)
    assert await r.ask() == "你好！"
    assert len(a.calls) == 1 and not b.calls and not c.calls
    assert r.outcomes() == [("a", "ok", None)]


async def test_falls_back_in_chain_order() -> None:
    a = FakeProvider("a", [fail(E.ProviderUnavailable, "down")])
    b = FakeProvider("b", [fail(E.Timeout, "slow")])
    c = FakeProvider("c", ok_script("来自 C"))
    r = rig(a, b, c, chain=["a", "b", "c"])
    assert await r.ask() == "来自 C"
    assert [t.provider for t in r.trace] == ["a", "a", "b", "b", "c"]  # one quick retry each, then on
    assert r.outcomes()[-1] == ("c", "ok", None)
    assert {t.error_kind for t in r.trace[:2]} == {"unavailable"}
    assert {t.error_kind for t in r.trace[2:4]} == {"timeout"}


async def test_chain_order_is_the_configured_order_not_the_dict_order() -> None:
    a, b = FakeProvider("a", ok_script("A")), FakeProvider("b", ok_script("B"))
    r = rig(a, b, chain=["b", "a"])
    assert await r.ask() == "B"
    assert not a.calls


async def test_final_event_comes_last_and_names_the_provider() -> None:
    a = FakeProvider("a", [fail(E.ProviderUnavailable)])
    b = FakeProvider("b")
    r = rig(a, b)
    events = [ev async for ev in r.router.chat(MSGS)]
    assert isinstance(events[-1], Final) and events[-1].provider == "b"
    assert sum(isinstance(e, Final) for e in events) == 1


async def test_every_provider_failing_raises_the_last_error() -> None:
    a = FakeProvider("a", [fail(E.ProviderUnavailable)])
    b = FakeProvider("b", [fail(E.AuthError, "bad key")])
    r = rig(a, b)
    with pytest.raises(E.AuthError):
        await r.ask()
    assert r.outcomes() == [("a", "error", "unavailable"), ("a", "error", "unavailable"), ("b", "error", "auth")]


async def test_model_applies_only_to_the_first_provider() -> None:
    a = FakeProvider("a", [fail(E.ProviderUnavailable)])
    b = FakeProvider("b")
    r = rig(a, b)
    await r.ask(model="a-large")
    assert {c["model"] for c in a.calls} == {"a-large"}
    assert b.calls[0]["model"] is None  # b uses its own default, not a's model name


async def test_model_chosen_for_a_cooling_first_provider_is_not_sent_to_the_next() -> None:
    a = FakeProvider("a", [fail(E.AuthError)])
    b = FakeProvider("b")
    r = rig(a, b)
    await r.ask(model="a-large")  # a: auth error, breaker opens
    await r.ask(model="a-large")  # a skipped: b answers with its own model
    assert r.outcomes()[0] == ("a", "skipped", "cooldown")
    assert [c["model"] for c in b.calls] == [None, None]


async def test_options_and_tools_reach_the_provider() -> None:
    a = FakeProvider("a")
    r = rig(a)
    tools = [{"type": "function", "function": {"name": "kb_search", "parameters": {}}}]
    await r.ask(tools=tools, temperature=0.2, stream=False)
    assert a.calls[0]["tools"] == tools
    assert a.calls[0]["opts"] == {"temperature": 0.2}
    assert a.calls[0]["stream"] is False


# ---- retries ----------------------------------------------------------------------------------------


async def test_retry_after_is_honoured_on_the_last_provider() -> None:
    a = FakeProvider("a", [fail(E.RateLimited, "slow down", retry_after=2.0)], ok_script("好了"))
    r = rig(a)
    assert await r.ask() == "好了"
    assert r.sleep.delays == [2.0]
    assert r.outcomes() == [("a", "error", "rate_limited"), ("a", "ok", None)]


async def test_retry_after_is_capped_by_the_policy() -> None:
    a = FakeProvider("a", [fail(E.RateLimited, retry_after=500.0)], ok_script())
    r = rig(a, policy=RetryPolicy(max_retry_after_s=30.0))
    await r.ask()
    assert r.sleep.delays == [30.0]


async def test_backoff_grows_with_jitter_within_bounds() -> None:
    policy = RetryPolicy(max_retries_last=6, base_delay_s=0.25, max_delay_s=4.0, failure_threshold=100)
    delays_by_seed = []
    for seed in (1, 2, 1):
        a = FakeProvider("a", [fail(E.ProviderUnavailable)])
        r = rig(a, policy=policy, seed=seed)
        with pytest.raises(E.ProviderUnavailable):
            await r.ask()
        assert len(a.calls) == 7  # one try and six retries
        delays = r.sleep.delays
        assert len(delays) == 6
        for k, d in enumerate(delays):
            cap = min(4.0, 0.25 * 2 ** k)
            assert cap / 2 <= d <= cap, (k, d)
        # below the cap each delay is at least the previous one (half-to-full jitter on a doubling base)
        assert delays[0] <= delays[1] <= delays[2] <= delays[3] <= delays[4]
        assert delays[4] >= 2.0 and delays[5] <= 4.0  # it grows, up to the cap
        delays_by_seed.append(delays)
    assert delays_by_seed[0] == delays_by_seed[2]  # seeded: reproducible
    assert delays_by_seed[0] != delays_by_seed[1]  # jitter: another seed, other delays
    assert len({round(d / min(4.0, 0.25 * 2 ** k), 6) for k, d in enumerate(delays_by_seed[0])}) > 1


@pytest.mark.parametrize("err", [
    fail(E.ProviderUnavailable, "503"),
    fail(E.Timeout, "no first token"),
    fail(E.RateLimited, "qps"),
    fail(E.RateLimited, "qps", retry_after=0.5),
])
async def test_with_a_fallback_behind_at_most_one_quick_retry(err: Fail) -> None:
    a = FakeProvider("a", [err])
    b = FakeProvider("b", ok_script("B"))
    r = rig(a, b)
    assert await r.ask() == "B"
    assert len(a.calls) == 2
    assert len(r.sleep.delays) == 1 and r.sleep.total < 1.0
    assert len(b.calls) == 1


async def test_with_a_fallback_behind_a_long_retry_after_is_not_waited_for() -> None:
    a = FakeProvider("a", [fail(E.RateLimited, "wait", retry_after=2.0)])
    b = FakeProvider("b", ok_script("B"))
    r = rig(a, b)
    assert await r.ask() == "B"
    assert len(a.calls) == 1 and r.sleep.delays == []


async def test_quick_retries_stay_under_a_second_across_the_whole_chain_position() -> None:
    # slow base delays: no retry fits the 1 s budget, so a fallback is used at once
    a = FakeProvider("a", [fail(E.ProviderUnavailable)])
    b = FakeProvider("b")
    r = rig(a, b, policy=RetryPolicy(base_delay_s=2.5))
    await r.ask()
    assert len(a.calls) == 1 and r.sleep.total == 0


@pytest.mark.parametrize(("err", "kind"), [
    (fail(E.AuthError, "invalid key"), "auth"),
    (fail(E.BadRequest, "too long"), "bad_request"),
    (fail(E.ContentFiltered, "audit"), "content_filtered"),
    (fail(E.RateLimited, "daily quota", daily=True), "rate_limited"),
])
async def test_non_retryable_errors_move_on_without_retry(err: Fail, kind: str) -> None:
    a = FakeProvider("a", [err])
    b = FakeProvider("b", ok_script("B"))
    r = rig(a, b)
    assert await r.ask() == "B"
    assert len(a.calls) == 1 and r.sleep.delays == []
    assert r.outcomes() == [("a", "error", kind), ("b", "ok", None)]


@pytest.mark.parametrize("err", [fail(E.AuthError), fail(E.BadRequest), fail(E.ContentFiltered),
                                 fail(E.RateLimited, daily=True)])
async def test_non_retryable_errors_on_the_last_provider_are_raised_at_once(err: Fail) -> None:
    a = FakeProvider("a", [err])
    r = rig(a)
    with pytest.raises(E.ProviderError):
        await r.ask()
    assert len(a.calls) == 1 and r.sleep.delays == []


async def test_last_provider_gets_its_full_retries() -> None:
    a = FakeProvider("a", [fail(E.ProviderUnavailable)])
    b = FakeProvider("b", [fail(E.ProviderUnavailable)], [fail(E.ProviderUnavailable)], ok_script("B3"))
    r = rig(a, b, policy=RetryPolicy(max_retries_last=2, failure_threshold=10))
    assert await r.ask() == "B3"
    assert len(b.calls) == 3 and len(r.sleep.delays) == 3  # one quick retry of a, two of b


# ---- never behind the user's back: interrupted streams ---------------------------------------------


async def test_error_after_first_delta_raises_stream_interrupted() -> None:
    a = FakeProvider("a", [TextDelta("前半"), TextDelta("句"), fail(E.ProviderUnavailable, "engine crashed")])
    b = FakeProvider("b", ok_script("B 的回答"))
    r = rig(a, b)
    got: list[str] = []
    with pytest.raises(E.StreamInterrupted) as ei:
        async for ev in r.router.chat(MSGS, trace=r.trace):
            if isinstance(ev, TextDelta):
                got.append(ev.text)
    assert "".join(got) == "前半句"
    assert not b.calls  # never fell back behind the user's back
    assert len(a.calls) == 1 and r.sleep.delays == []  # nor retried
    assert ei.value.provider == "a"
    assert isinstance(ei.value.__cause__, E.ProviderUnavailable)
    assert r.outcomes() == [("a", "interrupted", "unavailable")]
    assert [(x.provider, x.outcome, x.error_kind) for x in r.records] == [("a", "interrupted", "unavailable")]
    assert r.records[0].ttft_ms is not None


async def test_error_after_a_tool_call_delta_is_an_interruption_too() -> None:
    a = FakeProvider("a", [ToolCallDelta(0, "call_1", "kb_search", '{"q":'), fail(E.Timeout)])
    b = FakeProvider("b")
    r = rig(a, b)
    with pytest.raises(E.StreamInterrupted):
        await r.ask()
    assert not b.calls


async def test_reasoning_only_then_error_still_falls_back() -> None:
    # no answer text reached the user yet (reasoning is kept out of the answer): a fallback is allowed
    a = FakeProvider("a", [ReasoningDelta("让我想想"), fail(E.ProviderUnavailable)])
    b = FakeProvider("b", ok_script("B"))
    r = rig(a, b)
    assert await r.ask() == "B"
    assert r.outcomes()[-1] == ("b", "ok", None)


async def test_error_before_any_delta_still_falls_back() -> None:
    a = FakeProvider("a", [Tick(0.01), fail(E.ProviderUnavailable)])
    b = FakeProvider("b", ok_script("B"))
    r = rig(a, b)
    assert await r.ask() == "B"


async def test_interruption_counts_against_the_breaker() -> None:
    a = FakeProvider("a", [TextDelta("x"), fail(E.ProviderUnavailable)])
    b = FakeProvider("b")
    r = rig(a, b, policy=RetryPolicy(failure_threshold=2))
    for _ in range(2):
        with pytest.raises(E.StreamInterrupted):
            await r.ask()
    assert r.router.cooling("a")


# ---- breaker ---------------------------------------------------------------------------------------


async def test_breaker_opens_skips_and_recovers_when_the_clock_passes() -> None:
    a = FakeProvider("a", [fail(E.ProviderUnavailable)], [fail(E.ProviderUnavailable)], [fail(E.ProviderUnavailable)],
                     ok_script("A 回来了"))
    b = FakeProvider("b", ok_script("B"))
    r = rig(a, b, policy=RetryPolicy(failure_threshold=3, cooldown_s=30.0))
    await r.ask()  # a fails twice (try + quick retry)
    assert not r.router.cooling("a")
    await r.ask()  # third consecutive failure: open; no retry of a provider that just opened
    assert len(a.calls) == 3
    assert r.router.cooling("a")
    assert r.router.status()["a"]["cooling_for_s"] == 30.0

    assert await r.ask() == "B"
    assert r.outcomes() == [("a", "skipped", "cooldown"), ("b", "ok", None)]
    assert len(a.calls) == 3  # not called while cooling

    r.clock.advance(29.0)
    await r.ask()
    assert len(a.calls) == 3
    r.clock.advance(1.5)
    assert not r.router.cooling("a")
    assert await r.ask() == "A 回来了"
    assert r.outcomes() == [("a", "ok", None)]
    assert r.router.status()["a"] == {"failures": 0, "cooling_for_s": 0.0}


async def test_breaker_reopens_at_once_if_the_provider_still_fails_after_cooldown() -> None:
    a = FakeProvider("a", [fail(E.ProviderUnavailable)])
    b = FakeProvider("b")
    r = rig(a, b, policy=RetryPolicy(failure_threshold=2, cooldown_s=10.0))
    await r.ask()
    assert r.router.cooling("a")
    r.clock.advance(11)
    await r.ask()  # half-open: one try, fails, opens again
    assert r.trace[0].provider == "a" and r.trace[0].outcome == "error"
    assert r.router.cooling("a")


async def test_success_resets_the_failure_count() -> None:
    a = FakeProvider("a", [fail(E.ProviderUnavailable)], ok_script(), [fail(E.ProviderUnavailable)], ok_script())
    b = FakeProvider("b")
    r = rig(a, b, policy=RetryPolicy(failure_threshold=2, base_delay_s=0.1))
    for _ in range(3):
        await r.ask()  # fail, quick retry ok; ...
    assert not r.router.cooling("a")
    assert r.router.status()["a"]["failures"] == 0


async def test_bad_requests_do_not_open_the_breaker() -> None:
    # the threshold counts consecutive *retryable* failures: two bad requests (about the request,
    # not the provider) and then one 503 must not open a threshold-2 breaker
    a = FakeProvider("a", [fail(E.BadRequest, "context too long")], [fail(E.ContentFiltered)],
                     [fail(E.ProviderUnavailable)], ok_script("A"))
    r = rig(a, policy=RetryPolicy(failure_threshold=2, max_retries_last=0))
    for _ in range(3):
        with pytest.raises(E.ProviderError):
            await r.ask()
    assert not r.router.cooling("a")
    assert r.router.status()["a"]["failures"] == 1
    assert await r.ask() == "A"


async def test_auth_error_cools_for_the_auth_cooldown() -> None:
    a = FakeProvider("a", [fail(E.AuthError)], ok_script("A"))
    b = FakeProvider("b", ok_script("B"))
    r = rig(a, b, policy=RetryPolicy(auth_cooldown_s=600.0))
    await r.ask()
    assert r.router.cooling("a")
    r.clock.advance(599)
    assert await r.ask() == "B" and r.trace[0].outcome == "skipped"
    r.clock.advance(2)
    assert await r.ask() == "A"


async def test_daily_rate_limit_cools_for_the_daily_cooldown() -> None:
    a = FakeProvider("a", [fail(E.RateLimited, "quota", daily=True)], ok_script("A"))
    b = FakeProvider("b", ok_script("B"))
    r = rig(a, b, policy=RetryPolicy(daily_cooldown_s=3600.0, cooldown_s=30.0))
    await r.ask()
    r.clock.advance(1800)
    assert await r.ask() == "B"
    r.clock.advance(1801)
    assert await r.ask() == "A"


async def test_when_every_provider_is_cooling_the_last_is_still_tried() -> None:
    a = FakeProvider("a", [fail(E.AuthError)])
    b = FakeProvider("b", [fail(E.AuthError)], ok_script("B 还在"))
    r = rig(a, b)
    with pytest.raises(E.AuthError):
        await r.ask()
    assert r.router.cooling("a") and r.router.cooling("b")
    assert await r.ask() == "B 还在"
    assert r.outcomes() == [("a", "skipped", "cooldown"), ("b", "ok", None)]
    assert len(a.calls) == 1 and len(b.calls) == 2


async def test_a_cooling_pinned_provider_is_still_tried() -> None:
    a = FakeProvider("a", [fail(E.AuthError)], ok_script("A"))
    b = FakeProvider("b")
    r = rig(a, b)
    await r.ask()
    assert r.router.cooling("a")
    assert await r.ask(only="a") == "A"


# ---- concurrency caps ------------------------------------------------------------------------------


async def test_concurrency_cap_limits_calls_in_flight() -> None:
    a = FakeProvider("a", [Yield(5), TextDelta("x"), Yield(5), Final("stop")])
    r = rig(a, concurrency={"a": 2})
    replies = await asyncio.gather(*(collect(r.router.chat(MSGS)) for _ in range(10)))
    assert [x.text for x in replies] == ["x"] * 10
    assert a.max_in_flight == 2
    assert len(a.calls) == 10 and a.in_flight == 0


async def test_without_a_cap_calls_run_side_by_side() -> None:
    a = FakeProvider("a", [Yield(5), TextDelta("x"), Yield(5), Final("stop")])
    r = rig(a)
    await asyncio.gather(*(collect(r.router.chat(MSGS)) for _ in range(10)))
    assert a.max_in_flight == 10


async def test_default_cap_comes_from_the_preset() -> None:
    a = FakeProvider("spark", [Yield(5), TextDelta("x"), Final("stop")])
    a.preset = PRESETS["spark"]  # type: ignore[attr-defined]
    r = rig(a)
    await asyncio.gather(*(collect(r.router.chat(MSGS)) for _ in range(6)))
    assert a.max_in_flight == PRESETS["spark"].max_concurrency == 2


async def test_cap_slot_is_released_after_a_failure() -> None:
    a = FakeProvider("a", [Yield(2), fail(E.BadRequest)])
    r = rig(a, concurrency={"a": 1})
    for _ in range(3):
        with pytest.raises(E.BadRequest):
            await asyncio.wait_for(r.ask(), 2)
    assert a.in_flight == 0


# ---- only= -----------------------------------------------------------------------------------------


async def test_only_pins_one_provider() -> None:
    a, b = FakeProvider("a", ok_script("A")), FakeProvider("b", ok_script("B"))
    r = rig(a, b)
    assert await r.ask(only="b") == "B"
    assert not a.calls
    assert r.outcomes() == [("b", "ok", None)]


async def test_only_never_falls_back() -> None:
    a = FakeProvider("a", [fail(E.ProviderUnavailable)])
    b = FakeProvider("b", ok_script("B"))
    r = rig(a, b, policy=RetryPolicy(max_retries_last=2, failure_threshold=10))
    with pytest.raises(E.ProviderUnavailable):
        await r.ask(only="a")
    assert not b.calls
    assert len(a.calls) == 3  # a pinned provider is the last one: it gets the full retries


async def test_only_passes_the_model() -> None:
    a, b = FakeProvider("a"), FakeProvider("b")
    r = rig(a, b)
    await r.ask(only="b", model="b-pro")
    assert b.calls[0]["model"] == "b-pro"


async def test_only_unknown_provider_is_a_bad_request() -> None:
    r = rig(FakeProvider("a"))
    with pytest.raises(E.BadRequest):
        await r.ask(only="nope")


async def test_added_provider_can_be_pinned_but_is_not_in_the_chain() -> None:
    a, extra = FakeProvider("a", ok_script("A")), FakeProvider("extra", ok_script("E"))
    r = rig(a)
    r.router.add("extra", extra, concurrency=1)
    assert await r.ask() == "A"
    assert await r.ask(only="extra") == "E"


def test_a_chain_naming_an_unbuilt_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="ghost"):
        Router({"a": FakeProvider("a")}, ["a", "ghost"])


# ---- records ---------------------------------------------------------------------------------------


async def test_every_attempt_is_recorded_with_its_fields() -> None:
    clock = Clock()
    a = FakeProvider("a", [Tick(0.2), fail(E.ProviderUnavailable, "503", code="server_high_load")])
    b = FakeProvider("b", [Tick(0.05), ReasoningDelta("想"), Tick(0.05), TextDelta("答"), Tick(0.1), TextDelta("案"),
                           Final("stop", Usage(7, 3), "req-b")], default_model="b-model")
    r = rig(a, b, clock=clock)
    assert await r.ask(purpose="ask") == "答案"
    assert len(r.records) == 3  # a, a again (quick retry), b
    first, _, last = r.records
    assert (first.provider, first.outcome, first.error_kind, first.error_code) == \
        ("a", "error", "unavailable", "server_high_load")
    assert first.ttft_ms is None and first.tokens_in is None and first.tokens_out is None
    assert first.duration_ms == pytest.approx(200.0)
    assert first.model == "fake-model" and first.purpose == "ask"
    assert first.started_at == 1_700_000_000.0
    assert (last.provider, last.outcome, last.error_kind) == ("b", "ok", None)
    assert last.model == "b-model"
    assert last.ttft_ms == pytest.approx(50.0)  # the first delta of any kind
    assert last.duration_ms == pytest.approx(200.0)
    assert (last.tokens_in, last.tokens_out) == (7, 3)
    assert last.request_id == "req-b"
    assert r.trace[-1].latency_ms == pytest.approx(200.0)


async def test_record_without_text_has_no_ttft_and_without_usage_no_tokens() -> None:
    a = FakeProvider("a", [Final("stop", None, None)])
    r = rig(a)
    await r.ask()
    (rec,) = r.records
    assert rec.outcome == "ok" and rec.ttft_ms is None and rec.tokens_in is None and rec.tokens_out is None


async def test_skipped_providers_are_traced_not_recorded() -> None:
    a = FakeProvider("a", [fail(E.AuthError)])
    b = FakeProvider("b")
    r = rig(a, b)
    await r.ask()
    r.records.clear()
    await r.ask()
    assert [x.provider for x in r.records] == ["b"]
    assert r.trace[0].as_dict()["outcome"] == "skipped"


async def test_a_consumer_that_stops_early_is_recorded_as_cancelled_and_the_stream_closed() -> None:
    a = FakeProvider("a", ok_script("一", "二", "三"))
    r = rig(a, concurrency={"a": 1})
    gen = r.router.chat(MSGS)
    async for ev in gen:
        assert isinstance(ev, TextDelta)
        break
    await gen.aclose()
    assert a.closed == 1 and a.in_flight == 0
    assert [x.outcome for x in r.records] == ["cancelled"]
    assert await r.ask() == "一二三"  # the cap's slot was given back


async def test_a_cancelled_task_is_recorded() -> None:
    gate = asyncio.Event()

    class Hanging(FakeProvider):
        async def chat(self, messages: Any, **kw: Any) -> AsyncIterator[Any]:  # type: ignore[override]
            yield TextDelta("x")
            await gate.wait()

    r = rig(Hanging("a"))
    task = asyncio.create_task(r.ask())
    for _ in range(10):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [x.outcome for x in r.records] == ["cancelled"]


def test_attempt_as_dict_has_the_cli_fields() -> None:
    d = Attempt("spark", "error", "rate_limited", "11202", "qps", 12.345).as_dict()
    assert d == {"provider": "spark", "outcome": "error", "error_kind": "rate_limited", "error_code": "11202",
                 "latency_ms": 12.3}


# ---- over real loopback HTTP ------------------------------------------------------------------------


@pytest.fixture
async def stub() -> AsyncIterator[tuple[StubServer, Script]]:
    script = Script()
    server = await StubServer(script).start()
    try:
        yield server, script
    finally:
        await server.close()


def http_provider(name: str, base_url: str, *, preset: str = "vllm") -> OpenAICompatProvider:
    p = replace(PRESETS[preset], name=name, base_url=base_url, default_model="m")
    return OpenAICompatProvider(p, api_key="k", timeouts=Timeouts(connect=2, first_token=5, total=10))


@pytest.fixture
async def http_rig(stub: tuple[StubServer, Script]) -> AsyncIterator[Callable[..., Rig]]:
    server, _ = stub
    made: list[Router] = []

    def build(*names: str, presets: dict[str, str] | None = None, **kw: Any) -> Rig:
        clock = Clock()
        sleeper = Sleeper(clock)
        records: list[CallRecord] = []
        provs = {n: http_provider(n, f"{server.url}/{n}/v1", preset=(presets or {}).get(n, "vllm")) for n in names}
        router = Router(provs, list(names), recorder=records.append, clock=clock, sleep=sleeper,
                        rng=random.Random(3), **kw)
        made.append(router)
        return Rig(router, clock, sleeper, records, [])

    yield build
    for router in made:
        await router.aclose()


async def test_http_retry_after_header_reaches_the_sleep(stub: tuple[StubServer, Script],
                                                          http_rig: Callable[..., Rig]) -> None:
    _, script = stub
    script.routes["/vllm/v1/chat/completions"] = [
        qianfan_error(429, "rpm_rate_limit_exceeded", headers={"retry-after": "2"}),
        text_stream(["重试", "成功"]),
    ]
    r = http_rig("vllm")
    assert await r.ask() == "重试成功"
    assert r.sleep.delays == [2.0]
    assert r.outcomes() == [("vllm", "error", "rate_limited"), ("vllm", "ok", None)]
    assert r.records[-1].tokens_in == 12 and r.records[-1].tokens_out == 2


async def test_http_spark_body_code_and_503_fall_back_to_vllm(stub: tuple[StubServer, Script],
                                                               http_rig: Callable[..., Rig]) -> None:
    server, script = stub
    script.routes.update({
        "/spark/v1/chat/completions": [spark_body_error(11202)],
        "/qwen/v1/chat/completions": [Reply.json({"error": {"message": "busy", "code": "server_high_load"}}, 503)],
        "/vllm/v1/chat/completions": [text_stream(["本地", "回答"], model="m")],
    })
    r = http_rig("spark", "qwen", "vllm", presets={"spark": "spark", "qwen": "qwen"})
    reply = await collect(r.router.chat(MSGS, trace=r.trace))
    assert reply.text == "本地回答" and reply.final is not None and reply.final.provider == "vllm"
    kinds = {(a.provider, a.outcome, a.error_kind) for a in r.trace}
    assert kinds == {("spark", "error", "rate_limited"), ("qwen", "error", "unavailable"), ("vllm", "ok", None)}
    assert r.sleep.total < 1.0
    assert [x.provider for x in r.records].count("vllm") == 1
    paths = [q.path for q in server.requests]
    assert paths[-1] == "/vllm/v1/chat/completions"


async def test_http_stream_dying_after_text_is_interrupted_without_fallback(
        stub: tuple[StubServer, Script], http_rig: Callable[..., Rig]) -> None:
    server, script = stub
    script.routes.update({
        "/vllm/v1/chat/completions": [midstream_error(["第一段", "回答"])],
        "/qwen/v1/chat/completions": [text_stream(["不该出现"])],
    })
    r = http_rig("vllm", "qwen", presets={"qwen": "qwen"})
    got: list[str] = []
    with pytest.raises(E.StreamInterrupted):
        async for ev in r.router.chat(MSGS, trace=r.trace):
            if isinstance(ev, TextDelta):
                got.append(ev.text)
    assert "".join(got) == "第一段回答"
    assert not [q for q in server.requests if q.path.startswith("/qwen")]
    assert r.outcomes() == [("vllm", "interrupted", "unavailable")]
    assert [x.outcome for x in r.records] == ["interrupted"]


async def test_http_connection_reset_mid_stream_is_interrupted(stub: tuple[StubServer, Script],
                                                               http_rig: Callable[..., Rig]) -> None:
    _, script = stub
    script.routes["/vllm/v1/chat/completions"] = [text_stream(["一", "二", "三", "四"], reset_after=3)]
    r = http_rig("vllm")
    with pytest.raises(E.StreamInterrupted):
        await r.ask()
    assert r.outcomes()[-1][1] == "interrupted"
    assert r.sleep.delays == []
