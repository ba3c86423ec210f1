"""The router: one `chat()` over a fallback chain of providers.

- Retries with exponential backoff and jitter, honouring Retry-After, only before the
  first delta reached the caller; with another provider next in the chain, at most one
  quick retry (under a second in all) before moving on.
- A cooldown (circuit breaker) for a provider that keeps failing; it recovers by itself.
- Per-provider concurrency caps.
- Every attempt recorded through a non-blocking recorder (see records.py).
A stream that dies after text was delivered raises StreamInterrupted: the caller shows the
partial answer with a note; nothing is retried behind the user's back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from . import errors as E
from .records import Caller, CallRecord, Recorder
from .types import ChatEvent, Final, Message, Provider, ReasoningDelta, TextDelta, ToolCallDelta


@dataclass(slots=True)
class Attempt:
    provider: str
    outcome: str  # ok | error | interrupted | skipped
    error_kind: str | None = None
    error_code: str | None = None
    message: str = ""
    latency_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "outcome": self.outcome, "error_kind": self.error_kind,
                "error_code": self.error_code, "latency_ms": round(self.latency_ms, 1)}


@dataclass(slots=True)
class RetryPolicy:
    max_retries_last: int = 2  # retries on the last provider of the chain
    quick_retry_budget_s: float = 1.0  # with a fallback behind: one retry only if it waits less than this
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    max_retry_after_s: float = 30.0
    failure_threshold: int = 3  # consecutive failures that open the breaker
    cooldown_s: float = 30.0
    auth_cooldown_s: float = 600.0
    daily_cooldown_s: float = 3600.0


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


@dataclass(slots=True)
class CallOptions:
    trace: list[Attempt] | None = None
    purpose: str = "chat"
    user_id: str | None = None
    guild_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Router:
    name = "router"

    def __init__(
        self,
        providers: dict[str, Provider],
        chain: list[str],
        *,
        recorder: Recorder | None = None,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: random.Random | None = None,
        concurrency: dict[str, int] | None = None,
    ) -> None:
        missing = [c for c in chain if c not in providers]
        if missing:
            raise ValueError(f"providers not built: {missing}")
        self.providers = providers
        self.chain = chain
        self.recorder = recorder
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self._breakers: dict[str, _Breaker] = {n: _Breaker() for n in providers}
        caps = concurrency or {}
        self._sems = {n: asyncio.Semaphore(caps.get(n, getattr(getattr(p, "preset", None), "max_concurrency", 16)))
                      for n, p in providers.items()}

    def add(self, name: str, provider: Provider, concurrency: int | None = None) -> None:
        """Make a provider available for pinning (`only=`) without joining the chain."""
        self.providers[name] = provider
        self._breakers.setdefault(name, _Breaker())
        cap = concurrency or getattr(getattr(provider, "preset", None), "max_concurrency", 16)
        self._sems.setdefault(name, asyncio.Semaphore(cap))

    @property
    def default_model(self) -> str:
        return self.providers[self.chain[0]].default_model

    # -- breaker ---------------------------------------------------------------------------------

    def cooling(self, name: str) -> bool:
        return self._breakers[name].open_until > self.clock()

    def _fail(self, name: str, err: E.ProviderError) -> None:
        b = self._breakers[name]
        p = self.policy
        if isinstance(err, E.AuthError):
            b.failures += 1
            b.open_until = self.clock() + p.auth_cooldown_s
        elif isinstance(err, E.RateLimited) and err.daily:
            b.failures += 1
            b.open_until = self.clock() + p.daily_cooldown_s
        elif err.retryable:
            # only consecutive retryable failures count: a BadRequest or a content filter is about
            # this request, not about the provider's health
            b.failures += 1
            if b.failures >= p.failure_threshold:
                b.open_until = self.clock() + p.cooldown_s

    def _ok(self, name: str) -> None:
        b = self._breakers[name]
        b.failures = 0
        b.open_until = 0.0

    def status(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {n: {"failures": b.failures, "cooling_for_s": max(0.0, round(b.open_until - now, 1))}
                for n, b in self._breakers.items()}

    # -- chat --------------------------------------------------------------------------------------

    def _delay(self, attempt: int, err: E.ProviderError) -> float:
        ra = getattr(err, "retry_after", None)
        if ra is not None:
            return min(float(ra), self.policy.max_retry_after_s)
        base = min(self.policy.max_delay_s, self.policy.base_delay_s * (2 ** attempt))
        return base * (0.5 + self.rng.random() / 2)  # jitter: half to full

    async def chat(
        self,
        messages: list[Message],
        *,
        model: str | None = None,
        stream: bool = True,
        tools: list[dict[str, Any]] | None = None,
        only: str | None = None,
        trace: list[Attempt] | None = None,
        purpose: str = "chat",
        caller: Caller | None = None,
        **opts: Any,
    ) -> AsyncIterator[ChatEvent]:
        """Stream a reply. `only` pins one provider (no fallback); `trace` receives the attempts;
        `caller` is stamped on the call records."""
        chain = [only] if only else self.chain
        if only and only not in self.providers:
            raise E.BadRequest(f"provider {only!r} is not configured", provider=only)
        attempts: list[Attempt] = trace if trace is not None else []
        candidates = [n for n in chain if not self.cooling(n)] or chain[-1:]  # never leave the user with nothing
        for n in chain:
            if n not in candidates:
                attempts.append(Attempt(n, "skipped", "cooldown", None, "provider cooling down"))
        last_error: E.ProviderError | None = None
        for pos, name in enumerate(candidates):
            is_last = pos == len(candidates) - 1
            provider = self.providers[name]
            # a model name only applies to the provider it was chosen for (the chain's first, or the
            # pinned one), even when that first provider is cooling down and skipped
            use_model = model if (only or name == chain[0]) else None
            retries_allowed = self.policy.max_retries_last if is_last else 1
            retry = 0
            waited = 0.0
            while True:
                started_wall = self.wall_clock()
                t0 = self.clock()
                ttft: float | None = None
                delivered = False
                final: Final | None = None
                try:
                    # aclosing: a consumer that stops early closes the provider's stream (and its
                    # connection) now, not whenever the garbage collector finalises it
                    async with self._sems[name], aclosing(
                            provider.chat(messages, model=use_model, stream=stream, tools=tools, **opts)) as events:
                        async for ev in events:
                            if isinstance(ev, Final):
                                final = ev
                                continue
                            if ttft is None and isinstance(ev, (TextDelta, ToolCallDelta, ReasoningDelta)):
                                ttft = self.clock() - t0
                            if isinstance(ev, (TextDelta, ToolCallDelta)):
                                delivered = True
                            yield ev
                except E.ProviderError as err:
                    elapsed = self.clock() - t0
                    self._fail(name, err)
                    if delivered:
                        attempts.append(Attempt(name, "interrupted", err.kind, _s(err.code), err.message, elapsed * 1e3))
                        self._record(name, use_model or provider.default_model, started_wall, ttft, elapsed, None,
                                     "interrupted", err, purpose, caller)
                        raise E.StreamInterrupted(err.message, provider=name, code=err.code,
                                                  request_id=err.request_id) from err
                    attempts.append(Attempt(name, "error", err.kind, _s(err.code), err.message, elapsed * 1e3))
                    self._record(name, use_model or provider.default_model, started_wall, ttft, elapsed, None,
                                 "error", err, purpose, caller)
                    last_error = err
                    # a breaker that just opened means: stop hammering, use the fallback
                    if err.retryable and retry < retries_allowed and (is_last or not self.cooling(name)):
                        delay = self._delay(retry, err)
                        # with a fallback behind us, only a quick retry is worth the user's time
                        if is_last or waited + delay <= self.policy.quick_retry_budget_s:
                            retry += 1
                            waited += delay
                            await self.sleep(delay)
                            continue
                    break
                except (asyncio.CancelledError, GeneratorExit):  # task cancelled, or the consumer stopped early
                    self._record(name, use_model or provider.default_model, started_wall, ttft, self.clock() - t0,
                                 final, "cancelled", None, purpose, caller)
                    raise
                elapsed = self.clock() - t0
                self._ok(name)
                attempts.append(Attempt(name, "ok", latency_ms=elapsed * 1e3))
                self._record(name, (final.model if final and final.model else use_model or provider.default_model),
                             started_wall, ttft, elapsed, final, "ok", None, purpose, caller)
                yield final or Final("stop", None, None, name, use_model)
                return
        assert last_error is not None or not candidates
        raise last_error or E.ProviderUnavailable("no provider available")

    def _record(self, provider: str, model: str | None, started: float, ttft: float | None, duration: float,
                final: Final | None, outcome: str, err: E.ProviderError | None, purpose: str,
                caller: Caller | None = None) -> None:
        if self.recorder is None:
            return
        usage = final.usage if final else None
        self.recorder(CallRecord(
            started_at=started, provider=provider, model=model or "", purpose=purpose,
            ttft_ms=None if ttft is None else ttft * 1e3, duration_ms=duration * 1e3,
            tokens_in=usage.prompt_tokens if usage else None, tokens_out=usage.completion_tokens if usage else None,
            outcome=outcome, error_kind=err.kind if err else None, error_code=_s(err.code) if err else None,
            request_id=(err.request_id if err else (final.request_id if final else None)),
            user_id=caller.user_id if caller else None, guild_id=caller.guild_id if caller else None,
        ))

    async def health(self) -> dict[str, Any]:
        return {n: await p.health() for n, p in self.providers.items()}

    async def aclose(self) -> None:
        for p in self.providers.values():
            await p.aclose()


def _s(v: Any) -> str | None:
    return None if v is None else str(v)
