"""BufferedRecorder (providers/records.py): cheap synchronous calls on the hot path, batches
written to an async sink by a background task, the rest written on aclose, and a sink that
fails never breaks the caller."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from providers.records import BufferedRecorder, CallRecord


def rec(i: int, outcome: str = "ok") -> CallRecord:
    return CallRecord(started_at=1_700_000_000.0 + i, provider="vllm", model="m", purpose="chat", ttft_ms=12.5,
                      duration_ms=40.0, tokens_in=10, tokens_out=i, outcome=outcome)


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[CallRecord]] = []
        self.gate: asyncio.Event | None = None  # when set up, each write waits for it
        self.failures = 0  # this many writes raise first
        self.started = asyncio.Event()
        self.wrote = asyncio.Event()  # set after each successful write

    async def __call__(self, batch: list[CallRecord]) -> None:
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.batches.append(list(batch))
        self.wrote.set()

    @property
    def written(self) -> list[int]:
        return [r.tokens_out or 0 for b in self.batches for r in b]


async def settle(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_full_batch_is_written_off_the_hot_path() -> None:
    sink = Sink()
    r = BufferedRecorder(sink, batch=3, interval_s=60)
    for i in range(3):
        assert r(rec(i)) is None
    assert sink.batches == []  # the call itself never writes
    await settle()
    assert sink.written == [0, 1, 2]
    assert len(sink.batches) == 1
    await r.aclose()


async def test_below_the_batch_size_records_wait_for_the_interval_or_close() -> None:
    sink = Sink()
    r = BufferedRecorder(sink, batch=100, interval_s=60)
    r(rec(1))
    r(rec(2))
    await settle()
    assert sink.batches == []
    await r.aclose()
    assert sink.batches == [[rec(1), rec(2)]]


async def test_the_interval_flushes_a_partial_batch() -> None:
    sink = Sink()
    r = BufferedRecorder(sink, batch=100, interval_s=0.01)
    r(rec(1))
    await asyncio.wait_for(sink.wrote.wait(), 2)  # no batch filled: the interval did it
    assert sink.written == [1]
    sink.wrote.clear()
    r(rec(2))
    await asyncio.wait_for(sink.wrote.wait(), 2)
    assert sink.written == [1, 2]
    assert len(sink.batches) == 2
    await r.aclose()


async def test_batches_keep_their_order_and_nothing_is_lost() -> None:
    sink = Sink()
    r = BufferedRecorder(sink, batch=5, interval_s=60)
    for i in range(23):
        r(rec(i))
        if i % 4 == 0:
            await settle(3)
    await r.aclose()
    assert sink.written == list(range(23))
    assert len(sink.batches) > 1


async def test_aclose_flushes_the_rest_and_stops_the_task() -> None:
    sink = Sink()
    r = BufferedRecorder(sink, batch=2, interval_s=60)
    for i in range(5):
        r(rec(i))
    await r.aclose()
    assert sink.written == [0, 1, 2, 3, 4]
    assert r._task is None
    await r.aclose()  # twice is fine
    assert sink.written == [0, 1, 2, 3, 4]


async def test_aclose_during_a_slow_write_finishes_it_instead_of_losing_it() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()
    r = BufferedRecorder(sink, batch=2, interval_s=60)
    r(rec(0))
    r(rec(1))
    await asyncio.wait_for(sink.started.wait(), 2)  # the background task is inside the sink now
    r(rec(2))  # arrives while that batch is being written
    closing = asyncio.create_task(r.aclose())
    await settle()
    assert not closing.done()
    sink.gate.set()
    await asyncio.wait_for(closing, 2)
    assert sink.written == [0, 1, 2]


async def test_the_caller_is_not_blocked_by_a_slow_sink() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()
    r = BufferedRecorder(sink, batch=1, interval_s=60)
    r(rec(0))
    await asyncio.wait_for(sink.started.wait(), 2)
    for i in range(1, 50):  # the sink is stuck; recording stays a plain append
        r(rec(i))
    assert sink.batches == []
    sink.gate.set()
    await r.aclose()
    assert sink.written == list(range(50))


async def test_a_failing_sink_never_raises_into_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    sink.failures = 1
    r = BufferedRecorder(sink, batch=2, interval_s=60)
    with caplog.at_level(logging.ERROR, logger="providers.records"):
        r(rec(0))
        r(rec(1))  # this batch's write fails in the background
        await settle()
        r(rec(2))
        await r.flush()  # and an explicit flush after recovery works
        await r.aclose()
    assert sink.written == [2]  # the failed batch is dropped, later ones are written
    assert "could not store 2 call records" in caplog.text


async def test_a_failing_sink_on_close_does_not_raise() -> None:
    sink = Sink()
    sink.failures = 99
    r = BufferedRecorder(sink, batch=100, interval_s=60)
    r(rec(0))
    await r.flush()
    r(rec(1))
    await r.aclose()  # no exception
    assert sink.batches == []


async def test_a_sink_that_hangs_does_not_hang_close() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()  # never set
    r = BufferedRecorder(sink, batch=1, interval_s=60, close_timeout_s=0.05)
    r(rec(0))
    await asyncio.wait_for(sink.started.wait(), 2)
    sink.gate = None  # the final flush of what is left works
    r(rec(1))
    await asyncio.wait_for(r.aclose(), 2)
    assert sink.written == [1]


def test_records_made_without_a_running_loop_are_kept_for_a_later_flush() -> None:
    sink = Sink.__new__(Sink)  # no loop here: build without the asyncio.Event
    sink.batches, sink.gate, sink.failures = [], None, 0
    sink.started = sink.wrote = None  # type: ignore[assignment]

    async def write(batch: list[CallRecord]) -> None:
        sink.batches.append(list(batch))

    r = BufferedRecorder(write, batch=1, interval_s=60)
    r(rec(0))
    r(rec(1))
    assert sink.batches == []
    asyncio.run(r.aclose())
    assert sink.written == [0, 1]


def test_call_record_as_dict() -> None:
    d = rec(3, "interrupted").as_dict()
    assert d["provider"] == "vllm" and d["outcome"] == "interrupted" and d["tokens_out"] == 3
    assert set(d) == {"started_at", "provider", "model", "purpose", "ttft_ms", "duration_ms", "tokens_in",
                      "tokens_out", "outcome", "error_kind", "error_code", "request_id", "user_id", "guild_id"}


async def test_records_reach_the_sqlite_store(tmp_path: Path) -> None:
    from bot.store import Store

    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    try:
        r = BufferedRecorder(store.add_call_records, batch=2, interval_s=60)
        r(rec(0))
        r(CallRecord(1_700_000_100.0, "spark", "lite", "ask", None, 5.0, None, None, "error", "rate_limited",
                     "11202", "cha000b0002@dx1"))
        r(rec(2, "interrupted"))
        await r.aclose()
        rows = await store.call_records()
    finally:
        await store.close()
    assert [(x["provider"], x["outcome"], x["error_kind"]) for x in rows] == [
        ("vllm", "ok", None), ("vllm", "interrupted", None), ("spark", "error", "rate_limited")]
    assert rows[2]["error_code"] == "11202" and rows[0]["ttft_ms"] == 12.5
