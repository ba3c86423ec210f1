"""`stats` and `report` against a scripted run: 200 calls with injected faults through a real
Router (fallback chain spark → qwen → vllm over loopback HTTP, each in its own wire format),
a BufferedRecorder and a real SQLite store. Time is injected: the stub moves the clock by
the scripted time to first token (or error latency) when a request arrives, a thin wrapper
moves it by the rest before the reply's end, and the router's sleeps move it too, so every
duration is known exactly and nothing waits.

Expected figures are computed independently, from the raw rows read with sqlite3 and numpy;
the router's attempt traces are the ground truth for the retries, fallbacks and skips that
the report infers from the records.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import random
import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.app import App
from bot.config import load_settings
from bot.prices import builtin_prices
from bot.report import build_report, cli_report, group_calls, replay_breakers, router_actions
from bot.stats import cli_stats, summarize
from bot.store import Store
from providers import errors as E
from providers.openai_compat import OpenAICompatProvider
from providers.presets import PRESETS
from providers.records import BufferedRecorder
from providers.router import Attempt, RetryPolicy, Router
from providers.types import Final, TextDelta
from tests.clocks import ManualClock
from tests.stubs.http_server import Reply, Request, StubServer
from tests.stubs.openai_wire import (
    dashscope_error,
    midstream_error,
    spark_body_error,
    spark_chunk_error,
    spark_stream,
    text_stream,
    vllm_flat_error,
)

BASE = 1_764_000_000.0  # the wall clock's origin: 2025-11-24 16:00 UTC
N_CALLS = 200
POLICY = RetryPolicy(cooldown_s=300.0)  # long enough that calls 40 s apart meet an open breaker
CHAIN = ["spark", "qwen", "vllm"]
MSGS = [{"role": "user", "content": "什么是 KV cache？"}]

# (outcome, weight) per provider; outcomes are built by `reply()`
FAULTS: dict[str, list[tuple[str, int]]] = {
    "spark": [("ok", 50), ("spark_11202", 25), ("spark_11200", 4), ("spark_10013", 5), ("http_503", 16)],
    "qwen": [("ok", 68), ("http_429", 10), ("data_inspection", 5), ("http_503", 6), ("midstream", 6), ("http_401", 5)],
    "vllm": [("ok", 62), ("vllm_503", 15), ("http_504", 10), ("vllm_400", 13)],
}
TIMING = {"spark": ((0.3, 1.2), (0.5, 3.0)), "qwen": ((0.2, 0.8), (0.4, 2.0)), "vllm": ((0.05, 0.2), (0.2, 1.0))}


class Clock(ManualClock):
    def __init__(self) -> None:
        super().__init__(wall_origin=BASE)


@dataclass
class Faults:
    """The stub's script: a seeded random outcome and timing per request, per provider."""

    clock: Clock
    rng: random.Random = field(default_factory=lambda: random.Random(20261129))
    rest: dict[str, float] = field(default_factory=dict)  # provider -> time from first token to the end
    served: Counter[str] = field(default_factory=Counter)
    last: str = ""

    def reply(self, name: str, outcome: str) -> Reply:
        match outcome:
            case "ok" if name == "spark":
                return spark_stream(["KV cache ", "缓存", "键值。"])
            case "ok":
                return text_stream(["KV cache ", "缓存", "注意力的", "键值。"], usage=(30, 4))
            case "spark_11202":
                return spark_body_error(11202, "AppIdQpsOverFlowError")
            case "spark_11200":
                return spark_body_error(11200, "AppIdNoAuthError")
            case "spark_10013":
                return spark_chunk_error(10013)
            case "http_503":
                return Reply.json({"error": {"message": "service unavailable", "code": "server_high_load"}}, 503)
            case "http_429":
                return Reply.json({"error": {"message": "Requests rate limit exceeded", "type": "Throttling.RateQuota",
                                             "code": "Throttling.RateQuota"}}, 429, {"retry-after": "2"})
            case "data_inspection":
                return dashscope_error(400, "DataInspectionFailed", "Input data may contain inappropriate content.")
            case "midstream":
                return midstream_error(["KV cache 是"], "engine crashed")
            case "http_401":
                return dashscope_error(401, "InvalidApiKey", "Invalid API-key provided.")
            case "vllm_503":
                return vllm_flat_error(503, "engine overloaded")
            case "vllm_400":
                return vllm_flat_error(400, "This model's maximum context length is 8192 tokens")
            case "http_504":
                return Reply.json({"error": {"message": "upstream timed out"}}, 504)
        raise AssertionError(outcome)

    def __call__(self, req: Request) -> Reply:
        name = req.path.strip("/").split("/")[0]
        outcomes, weights = zip(*FAULTS[name], strict=True)
        outcome = self.rng.choices(outcomes, weights)[0]
        self.served[name] += 1
        self.last = name
        (t_lo, t_hi), (r_lo, r_hi) = TIMING[name]
        if outcome in ("ok", "midstream"):
            self.clock.advance(round(self.rng.uniform(t_lo, t_hi), 3))  # time to first token
            self.rest[name] = round(self.rng.uniform(r_lo, r_hi), 3)
        else:
            self.clock.advance(round(self.rng.uniform(0.02, 0.4), 3))  # an error's latency
        return self.reply(name, outcome)


class Clocked:
    """A real provider whose reply takes scripted time: the clock moves before the end of the stream."""

    def __init__(self, inner: OpenAICompatProvider, clock: Clock, faults: Faults) -> None:
        self.inner, self.clock, self.faults = inner, clock, faults

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    async def chat(self, messages: list[dict[str, Any]], **kw: Any) -> AsyncIterator[Any]:
        async for ev in self.inner.chat(messages, **kw):
            if isinstance(ev, Final):
                self.clock.advance(self.faults.rest.pop(self.inner.name))
            yield ev


@dataclass
class Truth:
    """What really happened, from the router's own traces."""

    traces: list[list[Attempt]] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)  # ok | failed | interrupted | cancelled
    cancelled_on: dict[int, str] = field(default_factory=dict)  # call index -> provider streaming when stopped

    def attempts(self, i: int) -> list[str]:
        names = [a.provider for a in self.traces[i] if a.outcome != "skipped"]
        return [*names, self.cancelled_on[i]] if i in self.cancelled_on else names

    def links(self, i: int) -> list[str]:
        a = self.attempts(i)
        return ["retry" if x == y else "fallback" for x, y in itertools.pairwise(a)]


async def sleeper(clock: Clock, s: float) -> None:
    clock.advance(s)


@dataclass
class Run:
    db: Path
    truth: Truth
    faults: Faults
    end: float  # wall time just after the last call


async def scripted_run(db: Path) -> Run:
    clock = Clock()
    faults = Faults(clock)
    store = await Store.open(f"sqlite+aiosqlite:///{db}", clock=clock.wall)
    server = await StubServer(faults).start()
    recorder = BufferedRecorder(store.add_call_records, batch=64, interval_s=3600)
    providers = {}
    for name in CHAIN:
        preset = replace(PRESETS[name], base_url=f"{server.url}/{name}/v1",
                         default_model="stub-vllm" if name == "vllm" else PRESETS[name].default_model)
        providers[name] = Clocked(OpenAICompatProvider(preset, api_key="sk-test-key-000"), clock, faults)
    router = Router(providers, list(CHAIN), recorder=recorder, policy=POLICY, clock=clock,  # type: ignore[arg-type]
                    wall_clock=clock.wall, sleep=lambda s: sleeper(clock, s), rng=random.Random(7))
    truth = Truth()
    try:
        for i in range(N_CALLS):
            if i:
                clock.advance(8 * 3600.0 if i % 10 == 0 else 40.0)  # bursts of ten calls, eight hours apart
            trace: list[Attempt] = []
            truth.traces.append(trace)
            stop_early = i % 25 == 7  # a user who closes the panel after the first words
            agen = router.chat(MSGS, trace=trace)
            try:
                async for ev in agen:
                    if stop_early and isinstance(ev, TextDelta):
                        truth.cancelled_on[i] = faults.last
                        break
                truth.ends.append("cancelled" if i in truth.cancelled_on else "ok")
            except E.StreamInterrupted:
                truth.ends.append("interrupted")
            except E.ProviderError:
                truth.ends.append("failed")
            finally:
                await agen.aclose()
        await recorder.aclose()
    finally:
        await router.aclose()
        await server.close()
        await store.close()
    return Run(db, truth, faults, clock.wall() + 1.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The scripted run, once for the module (a few seconds of loopback HTTP), in its own event loop;
    the tests read the database it leaves."""
    with pytest.MonkeyPatch.context() as mp:  # module scope runs before the autouse env isolation
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            mp.delenv(k, raising=False)
        mp.setenv("NO_PROXY", "*")
        return asyncio.run(scripted_run(tmp_path_factory.mktemp("usage") / "calls.db"))


@pytest.fixture
async def store(run: Run) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite+aiosqlite:///{run.db}")
    try:
        yield s
    finally:
        await s.close()


def raw_rows(db: Path, since: float | None = None) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("select * from call_records order by id")]
    con.close()
    return [r for r in rows if since is None or r["started_at"] >= since]


def expected_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["outcome"] == "ok"]
    judged = [r for r in rows if r["outcome"] != "cancelled"]
    ttft = np.array([r["ttft_ms"] for r in ok if r["ttft_ms"] is not None])
    total = np.array([r["duration_ms"] for r in ok])
    return {
        "calls": len(rows), "ok": len(ok),
        "success_rate": len(ok) / len(judged) if judged else None,
        "ttft": (np.percentile(ttft, 50), np.percentile(ttft, 95)) if len(ttft) else (None, None),
        "total": (np.percentile(total, 50), np.percentile(total, 95)) if len(total) else (None, None),
        "errors_by_kind": Counter(r["error_kind"] for r in rows if r["outcome"] in ("error", "interrupted")),
        "tokens": (sum(r["tokens_in"] or 0 for r in rows), sum(r["tokens_out"] or 0 for r in rows)),
    }


def check_figures(got: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    want = expected_figures(rows)
    assert got["calls"] == want["calls"] and got["ok"] == want["ok"]
    assert got["success_rate"] == pytest.approx(want["success_rate"], abs=1e-4)
    for key, (p50, p95) in (("ttft_ms", want["ttft"]), ("total_ms", want["total"])):
        assert got[key]["p50"] == pytest.approx(p50, abs=0.006), key
        assert got[key]["p95"] == pytest.approx(p95, abs=0.006), key
    assert Counter(got["errors_by_kind"]) == want["errors_by_kind"]
    assert (got["tokens_in"], got["tokens_out"]) == want["tokens"]


# --- the run itself is what it should be ------------------------------------------------------------

async def test_every_attempt_is_one_record_with_the_scripted_timing(run: Run) -> None:
    rows = raw_rows(run.db)
    assert sum(run.faults.served.values()) == len(rows)  # one HTTP request, one record
    assert len(rows) == sum(len(run.truth.attempts(i)) for i in range(N_CALLS))
    outcomes = Counter(r["outcome"] for r in rows)
    assert set(outcomes) == {"ok", "error", "interrupted", "cancelled"}
    assert outcomes["cancelled"] == N_CALLS // 25
    assert Counter(run.truth.ends)["failed"] > 0 and Counter(run.truth.ends)["interrupted"] > 0
    # faults of every kind were met, on each wire format
    assert {r["error_kind"] for r in rows if r["error_kind"]} >= {
        "rate_limited", "auth", "content_filtered", "unavailable", "timeout"}
    assert {"11202", "11200", "10013", "Throttling.RateQuota", "DataInspectionFailed", "InvalidApiKey"} <= {
        r["error_code"] for r in rows}
    for r in rows:
        if r["outcome"] == "ok":  # the injected clock: scripted times come back to the millisecond
            lo, hi = (x * 1e3 for x in TIMING[r["provider"]][0])
            assert lo - 1e-6 <= r["ttft_ms"] <= hi + 1e-6
            assert r["duration_ms"] > r["ttft_ms"]


# --- stats ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("days", [30, 3])
async def test_stats_json_agrees_with_the_records(run: Run, store: Store, days: int) -> None:
    prices = builtin_prices()
    doc = await summarize(store, days=days, now=lambda: run.end, prices=prices, tz="Asia/Shanghai")
    rows = raw_rows(run.db, since=run.end - days * 86400)
    assert 0 < len(rows) <= N_CALLS * 3
    if days == 3:
        assert len(rows) < len(raw_rows(run.db))  # the window really cut
    check_figures(doc["total"], rows)
    for m in doc["models"]:
        check_figures(m, [r for r in rows if (r["provider"], r["model"]) == (m["provider"], m["model"])])
    for p in doc["providers"]:
        check_figures(p, [r for r in rows if r["provider"] == p["provider"]])
    assert {(m["provider"], m["model"]) for m in doc["models"]} == {(r["provider"], r["model"]) for r in rows}
    # error codes add up to the kinds
    for p in doc["providers"]:
        by_kind: Counter[str] = Counter()
        for e in p["error_codes"]:
            by_kind[e["kind"]] += e["count"]
        assert by_kind == Counter(p["errors_by_kind"])
    # cost: ok calls priced by the built-in table
    want_cost = sum(prices.cost(r["provider"], r["model"], r["tokens_in"], r["tokens_out"]) or 0.0
                    for r in rows if r["outcome"] == "ok")
    assert doc["total"]["cost"] == pytest.approx(want_cost, abs=1e-6)
    assert doc["currency"] == "CNY" and doc["prices_as_of"] == prices.as_of
    json.dumps(doc)  # a JSON document


async def test_cli_stats_json_and_charts(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYBOT_DATABASE_URL", f"sqlite:///{run.db}")
    app = App(load_settings())
    try:
        out, err = io.StringIO(), io.StringIO()
        code = await cli_stats(app, 30, as_json=True, chart=tmp_path / "lat.png", out=out, err=err,
                               now=lambda: run.end)
        assert code == 0
        doc = json.loads(out.getvalue())
        check_figures(doc["total"], raw_rows(run.db))
        assert [Path(p).name for p in doc["charts"]] == ["lat.png", "lat-errors.png"]
        assert all(size > 1000 for size in sizes(doc["charts"]))
        out = io.StringIO()
        assert await cli_stats(app, 30, out=out, err=err, now=lambda: run.end) == 0
        assert "spark/lite" in out.getvalue() and "成功率" in out.getvalue()
        assert await cli_stats(app, 0, out=out, err=err, now=lambda: run.end) == 2
        assert "--days" in err.getvalue()
    finally:
        await app.aclose()


# --- report ------------------------------------------------------------------------------------------------

def sizes(paths: list[Any]) -> list[int]:
    return [Path(p).stat().st_size if Path(p).exists() else -1 for p in paths]


def section(md: str, title: str) -> list[str]:
    lines = md.splitlines()
    start = lines.index(f"## {title}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start + 1:end]


def table(lines: list[str]) -> list[list[str]]:
    rows = [ln for ln in lines if ln.startswith("| ")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", r)[1:-1]] for r in rows[2:]]  # skip head and rule


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


async def test_report_agrees_with_the_records(run: Run, store: Store, tmp_path: Path) -> None:
    out = tmp_path / "usage" / "report.md"
    rep = await build_report(store, days=30, now=lambda: run.end, prices=builtin_prices(), tz="Asia/Shanghai",
                             out=out, policy=POLICY)
    md = out.read_text(encoding="utf-8")
    assert md == rep.markdown and md.startswith("# 学伴 API 使用报告")
    rows = raw_rows(run.db)

    perf = table(section(md, "性能"))
    assert len(perf) == len({(r["provider"], r["model"]) for r in rows}) + 1  # + the total row
    for cells in perf:
        prov, model = cells[0], cells[1]
        subset = rows if prov == "**合计**" else [r for r in rows if (r["provider"], r["model"]) == (prov, model)]
        want = expected_figures(subset)
        assert int(cells[2]) == want["calls"] and int(cells[3]) == want["ok"]
        assert cells[4] == pct(want["success_rate"])
        assert [float(c) for c in cells[5:9]] == pytest.approx([*want["ttft"], *want["total"]], abs=0.051)
        assert (int(cells[9]), int(cells[10])) == want["tokens"]

    errors = table(section(md, "遇到的错误"))
    got = {(re.search(r"`(\w+)`", c[0]).group(1), c[1], c[2]): int(c[3]) for c in errors}  # type: ignore[union-attr]
    want_errors = Counter((r["error_kind"], r["error_code"] or "-", r["provider"])
                          for r in rows if r["outcome"] in ("error", "interrupted"))
    assert got == dict(want_errors)

    used = table(section(md, "使用的服务商"))
    assert {c[0]: int(c[2]) for c in used} == dict(Counter(r["provider"] for r in rows))

    # the advice names what to do for the codes met
    advice = "\n".join(section(md, "你可以怎么做"))
    assert "11202" in advice and "秒级流控" in advice and "SPARK_MAX_CONCURRENCY" in advice
    assert "DataInspectionFailed" in advice or "内容安全审核" in advice
    assert "Retry-After" in md

    # charts next to the report, linked relatively
    for name in ("report-latency.png", "report-errors.png"):
        assert f"]({name})" in md
        assert sizes([out.parent / name])[0] > 1000


async def test_router_actions_match_the_routers_own_traces(run: Run, store: Store) -> None:
    rows = raw_rows(run.db)
    truth = run.truth
    calls = group_calls(rows, POLICY)
    assert len(calls) == N_CALLS
    assert [[a["provider"] for a in c.attempts] for c in calls] == [truth.attempts(i) for i in range(N_CALLS)]
    assert [c.links for c in calls] == [truth.links(i) for i in range(N_CALLS)]

    acts = router_actions(rows, POLICY)
    links = [x for i in range(N_CALLS) for x in truth.links(i)]
    assert acts.retries == links.count("retry") > 0
    assert acts.fallbacks == links.count("fallback") > 0
    ends = Counter(truth.ends)
    assert acts.failed_calls == ends["failed"] and acts.interrupted_calls == ends["interrupted"]
    assert acts.fallbacks_then_ok == sum(1 for i in range(N_CALLS) if truth.ends[i] == "ok"
                                         and "fallback" in truth.links(i))
    skipped = Counter(a.provider for t in truth.traces for a in t if a.outcome == "skipped")
    assert skipped and acts.skipped == skipped  # calls routed around a cooling provider
    assert {c.provider for c in replay_breakers(rows, POLICY)} >= set(skipped)

    md = (await build_report(store, days=30, now=lambda: run.end, prices=builtin_prices(), policy=POLICY,
                             with_charts=False)).markdown
    router = "\n".join(section(md, "路由器做了什么"))
    assert f"**重试**：{acts.retries} 次" in router and f"**切换（fallback）**：{acts.fallbacks} 次" in router
    assert f"**最终失败**：{acts.failed_calls} 次" in router
    for prov, n in skipped.items():
        assert f"冷却期间 {n} 次请求绕开了它" in router and prov in router


async def test_cli_report_to_a_file_and_to_stdout(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYBOT_DATABASE_URL", f"sqlite:///{run.db}")
    app = App(load_settings())
    try:
        err = io.StringIO()
        assert await cli_report(app, 30, tmp_path / "r.md", stderr=err, now=lambda: run.end) == 0
        assert (tmp_path / "r-latency.png").exists() and (tmp_path / "r-errors.png").exists()
        assert "r.md" in err.getvalue()
        out = io.StringIO()
        assert await cli_report(app, 30, None, stdout=out, stderr=err, now=lambda: run.end) == 0
        md = out.getvalue()
        assert md.startswith("# 学伴 API 使用报告")
        links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
        assert len(links) == 2 and all(Path(p).is_absolute() for p in links) and min(sizes(links)) > 1000
        assert await cli_report(app, -1, None, stdout=out, stderr=err) == 2
    finally:
        await app.aclose()


async def test_an_empty_window_gives_an_honest_report(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    try:
        rep = await build_report(store, days=7, now=lambda: BASE, out=tmp_path / "empty.md")
        assert "没有调用记录" in rep.markdown and "没有遇到错误" in rep.markdown
        assert rep.stats["total"]["success_rate"] is None and rep.stats["models"] == []
        assert min(sizes([c.path for c in rep.charts])) > 0
    finally:
        await store.close()


async def test_terminal_slash_stats(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.stats import slash_stats

    monkeypatch.setenv("STUDYBOT_DATABASE_URL", f"sqlite:///{run.db}")
    app = App(load_settings())
    lines: list[str] = []
    try:
        await slash_stats(app, "30", lines.append, now=lambda: run.end)
        assert f"共 {len(raw_rows(run.db))} 次调用" in lines[-1] and "qwen/qwen-plus" in lines[-1]
        await slash_stats(app, "abc", lines.append)
        assert "usage" in lines[-1]
        await slash_stats(app, "0", lines.append)
        assert "--days" in lines[-1]
    finally:
        await app.aclose()
