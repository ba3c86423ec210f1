"""Model comparison (bot/compare.py) over real loopback HTTP: three providers of different
speeds, one failing; the JSON document of DESIGN §3; live panels; storage, votes, leaderboard.

Timing here is the stubs' own delays measured on the wall clock (the point of the test);
everything else uses the store's injected clock.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import App
from bot.compare import (
    CompareError,
    CompareResult,
    CompareRun,
    CompareStore,
    PanelUpdate,
    cli_compare,
    compare,
    parse_providers,
    rank,
    run_compare,
)
from bot.config import load_settings
from bot.errors import ConfigError
from bot.prices import load_prices
from bot.store import Store
from tests.stubs.http_server import Reply, Request, StubServer
from tests.stubs.openai_wire import dashscope_error, models_list, text_stream

PROMPT = "什么是KV cache"
# delays large enough that the loopback and SDK overhead (tens of ms on a busy 2-core machine) stays
# well inside the 20% the timing test allows; the other tests use the `quick` fixture
FAST = {"first": 0.50, "chunk": 0.10}  # TTFT 0.60 s, total 0.50 + 7 × 0.10 = 1.20 s
SLOW = {"first": 0.90, "chunk": 0.12}  # TTFT 1.02 s, total 0.90 + 7 × 0.12 = 1.74 s
FAIL_DELAY = 0.05
PIECES_FAST = ["KV cache ", "保存已算过的", "键和值，", "避免重复计算。"]
PIECES_SLOW = ["它缓存", "注意力的 K 和 V，", "以显存换", "速度。"]


def expected(d: dict[str, float], pieces: int) -> tuple[float, float]:
    """(ttft, total) in ms of text_stream: the role chunk, `pieces` text chunks, finish, usage, [DONE];
    the first text is chunk 1, every chunk after the first waits chunk_delay."""
    return (d["first"] + d["chunk"]) * 1e3, (d["first"] + (pieces + 3) * d["chunk"]) * 1e3


def handler(req: Request) -> Reply:
    name = req.path.strip("/").split("/")[0]
    if req.path.endswith("/models"):
        return models_list(f"{name}-model")
    if name == "fast":
        return text_stream(PIECES_FAST, usage=(12, 4), model="fast-model", first_delay=FAST["first"],
                           chunk_delay=FAST["chunk"])
    if name == "slow":
        return text_stream(PIECES_SLOW, usage=(12, 4), model="deepseek-chat", first_delay=SLOW["first"],
                           chunk_delay=SLOW["chunk"])
    r = dashscope_error(401, "InvalidApiKey", "Invalid API-key provided.")
    r.first_delay = FAIL_DELAY
    return r


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    server = await StubServer(handler).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short delays for tests that do not measure time (the order fast-before-slow is kept)."""
    monkeypatch.setitem(FAST, "first", 0.0)
    monkeypatch.setitem(FAST, "chunk", 0.0)
    monkeypatch.setitem(SLOW, "first", 0.15)
    monkeypatch.setitem(SLOW, "chunk", 0.0)


@pytest.fixture
async def app(stub: StubServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    """vllm (fast), ollama (failing: 401) and an extra provider `c` (slow) on loopback."""
    monkeypatch.setenv("VLLM_BASE_URL", f"{stub.url}/fast/v1")
    monkeypatch.setenv("VLLM_MODEL", "fast-model")
    monkeypatch.setenv("OLLAMA_BASE_URL", f"{stub.url}/broken/v1")
    monkeypatch.setenv("STUDYBOT_EXTRA_PROVIDERS", f"c={stub.url}/slow/v1")
    monkeypatch.setenv("C_MODEL", "deepseek-chat")
    monkeypatch.setenv("STUDYBOT_PROVIDERS", "vllm,ollama,c,offline")
    a = App(load_settings())
    try:
        yield a
    finally:
        await a.aclose()


def within(measured: float | None, want: float, rel: float = 0.20) -> bool:
    return measured is not None and abs(measured - want) <= rel * want


async def test_three_providers_two_answers_one_error_timings_match_the_stubs(app: App) -> None:
    # compare() does the HTTP stack's big one-time set-up itself (about a second) before its clocks start;
    # one untimed run takes the SDK's remaining first-use costs (model classes built on first parse, tens
    # of ms) out of the measurement too: they are this process's, not the stubs' delays
    await run_compare(app, PROMPT, "vllm,c", save=False)
    updates: list[PanelUpdate] = []
    t0 = time.monotonic()
    run = await run_compare(app, PROMPT, "vllm,ollama,c", on_update=updates.append)
    wall = time.monotonic() - t0
    fast, broken, slow = run.results
    assert [r.provider for r in run.results] == ["vllm", "ollama", "c"]  # the order asked for

    assert fast.answer == "".join(PIECES_FAST) and fast.error is None
    assert slow.answer == "".join(PIECES_SLOW) and slow.error is None
    assert broken.answer == "" and broken.error and broken.error_kind == "auth"
    assert "ollama" in broken.error and "密钥" in broken.error  # Chinese first, names the provider
    for r, d in ((fast, FAST), (slow, SLOW)):
        ttft, total = expected(d, 4)
        assert within(r.ttft_ms, ttft), (r.provider, r.ttft_ms, ttft)
        assert within(r.total_ms, total), (r.provider, r.total_ms, total)
        assert (r.tokens_in, r.tokens_out) == (12, 4)
    # a fast failure, not held up by the others
    assert broken.total_ms is not None and FAIL_DELAY * 1e3 <= broken.total_ms < expected(FAST, 4)[0]
    # concurrent, not one after another
    assert wall < (expected(FAST, 4)[1] + expected(SLOW, 4)[1]) / 1e3
    # costs from the built-in table: local vLLM is free, deepseek-chat is priced by model name
    assert fast.cost == 0.0
    p = load_prices().price("c", "deepseek-chat")
    assert p is not None and slow.cost == pytest.approx((12 * p.input + 4 * p.output) / 1e6)
    assert broken.cost is None  # no usage, no cost


async def test_panels_stream_concurrently_and_each_ends_once(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    # vllm: first text at 0.2 s, done at 1.1 s; c: all at once at 0.5 s; ollama fails at 0.05 s
    monkeypatch.setitem(FAST, "first", 0.05)
    monkeypatch.setitem(FAST, "chunk", 0.15)
    monkeypatch.setitem(SLOW, "first", 0.5)
    monkeypatch.setitem(SLOW, "chunk", 0.0)
    updates: list[tuple[str, str, bool, str]] = []
    run = await run_compare(app, PROMPT, ["vllm", "ollama", "c"],
                            on_update=lambda u: updates.append((u.result.provider, u.delta, u.done, u.text)))
    for r in run.results:
        mine = [u for u in updates if u[0] == r.provider]
        assert [u[2] for u in mine].count(True) == 1 and mine[-1][2]  # done once, last
        assert "".join(u[1] for u in mine) == r.answer  # the deltas make the answer
    order = [(p, done) for p, delta, done, _ in updates if done or delta]
    first_text = {p: order.index((p, False)) for p in ("vllm", "c")}
    # the failure showed at once; c started, streamed and finished while vllm was still streaming
    assert order[0] == ("ollama", True)
    assert first_text["vllm"] < first_text["c"] < order.index(("c", True)) < order.index(("vllm", True))
    assert all(u[3] == u[3].strip() or u[3] for u in updates)  # `text` is available on every update


async def test_a_callback_that_raises_does_not_stop_the_comparison(app: App, quick: None) -> None:
    async def bad(u: PanelUpdate) -> None:
        raise RuntimeError("panel could not be drawn")

    run = await run_compare(app, PROMPT, "vllm,c", on_update=bad)
    assert all(r.ok and r.answer for r in run.results)


async def test_json_document_of_design_section_3(app: App, quick: None) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await cli_compare(app, PROMPT, "vllm,ollama,c", as_json=True, out=out, err=err)
    assert code == 0
    doc = json.loads(out.getvalue())  # stdout holds only the JSON document
    assert doc["prompt"] == PROMPT
    keys = {"provider", "model", "answer", "error", "ttft_ms", "total_ms", "tokens_in", "tokens_out", "cost"}
    assert all(keys <= set(r) for r in doc["results"])
    by = {r["provider"]: r for r in doc["results"]}
    assert by["vllm"]["answer"] and by["c"]["answer"] and by["ollama"]["error"]
    assert by["ollama"]["answer"] == "" and by["vllm"]["error"] is None
    assert by["c"]["model"] == "deepseek-chat" and by["vllm"]["model"] == "fast-model"
    assert doc["run_id"] is not None and doc["currency"] == "CNY"


async def test_text_output_prints_each_panel_whole(app: App, quick: None) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await cli_compare(app, PROMPT, "c,ollama", as_json=False, out=out, err=err) == 0
    text = out.getvalue()
    assert "".join(PIECES_SLOW) in text and "✗ ollama" in text and "TTFT" in text
    assert "#" in err.getvalue()  # the saved run number, for voting


async def test_unknown_provider_is_a_usage_error_and_missing_key_a_panel(app: App, quick: None) -> None:
    with pytest.raises(ConfigError, match="nosuch"):
        await run_compare(app, PROMPT, "vllm,nosuch")
    run = await run_compare(app, PROMPT, "vllm,qwen")  # qwen is known but has no key here
    assert run.results[0].ok
    assert run.results[1].error and "DASHSCOPE_API_KEY" in run.results[1].error and run.results[1].answer == ""


async def test_compare_never_falls_back_and_records_its_calls(app: App, quick: None) -> None:
    run = await run_compare(app, PROMPT, "ollama", user_id="discord:7", guild_id="g3")
    assert run.results[0].error and run.results[0].answer == ""  # the chain's next provider was not asked
    router = await app.router()
    await app.flush_records()
    rows = await (await app.store()).call_records()
    assert rows and {r["provider"] for r in rows} == {"ollama"} and {r["purpose"] for r in rows} == {"compare"}
    # who asked is on every record, so /export and /forget find them
    assert {(r["user_id"], r["guild_id"]) for r in rows} == {("discord:7", "g3")}
    assert router.chain[0] == "vllm"


async def test_all_failing_exits_one_and_bad_prompts_are_refused(app: App, quick: None) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await cli_compare(app, PROMPT, "ollama", as_json=True, out=out, err=err) == 1
    assert await cli_compare(app, "  ", "vllm", as_json=True, out=out, err=err) == 2
    assert "prompt" in err.getvalue()
    with pytest.raises(CompareError):
        parse_providers(" , ")
    with pytest.raises(CompareError):
        parse_providers("a,b,c,d,e,f,g")
    assert parse_providers("Qwen, ernie,qwen") == ["qwen", "ernie"]


async def test_compare_with_a_router_directly_and_a_per_provider_timeout(stub: StubServer) -> None:
    from dataclasses import replace

    from providers.openai_compat import OpenAICompatProvider
    from providers.presets import PRESETS
    from providers.router import Router

    def prov(name: str, path: str) -> OpenAICompatProvider:
        return OpenAICompatProvider(replace(PRESETS["vllm"], name=name, base_url=f"{stub.url}/{path}/v1",
                                           default_model=f"{path}-model"), api_key=None)

    router = Router({"a": prov("a", "fast"), "b": prov("b", "slow")}, ["a", "b"])
    run = await compare(router, PROMPT, ["a", "b"], timeout_s=1.0)  # a needs 1.20 s, b 1.74 s
    for r, pieces in zip(run.results, (PIECES_FAST, PIECES_SLOW), strict=True):
        assert r.error_kind == "timeout" and "1 秒" in (r.error or "")
        assert "".join(pieces).startswith(r.answer)  # what arrived in time is kept
        assert r.total_ms is not None and 900 < r.total_ms < 1500
    await router.aclose()


# --- storage, votes, leaderboard (no network; the store's clock is injected) -------------------------

def made_run(prompt: str, *answers: tuple[str, str, bool]) -> CompareRun:
    return CompareRun(prompt, [CompareResult(p, m, "答" if ok else "", None if ok else "x: 失败 / failed",
                                             10.0, 20.0, 1, 2, 0.0, None if ok else "unavailable")
                               for p, m, ok in answers])


@pytest.fixture
async def cstore(tmp_path: Path) -> AsyncIterator[CompareStore]:
    now = [1_764_000_000.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/x.db", clock=clock)
    try:
        yield CompareStore(store)
    finally:
        await store.close()


async def test_runs_are_stored_and_read_back(cstore: CompareStore) -> None:
    run = made_run("p", ("qwen", "qwen-plus", True), ("spark", "lite", False))
    run_id = await cstore.save(run, user_id="discord:1", guild_id="g1")
    back = await cstore.run(run_id)
    assert back is not None and back.prompt == "p" and back.run_id == run_id
    assert [r.as_dict() for r in back.results] == [r.as_dict() for r in run.results]
    assert all(r.result_id for r in run.results)
    assert await cstore.run(run_id + 100) is None


async def test_one_vote_per_user_per_run_changeable(cstore: CompareStore) -> None:
    run = made_run("p", ("qwen", "qwen-plus", True), ("ernie", "ernie-speed-128k", True), ("spark", "lite", False))
    rid = await cstore.save(run, guild_id="g1")
    v = await cstore.vote(rid, "u1", 0)
    assert v.tally == [1, 0, 0] and not v.changed
    v = await cstore.vote(rid, "u1", 1)  # changed their mind: still one vote
    assert v.tally == [0, 1, 0] and v.changed
    v = await cstore.vote(rid, "u1", 1)
    assert v.tally == [0, 1, 0] and not v.changed
    await cstore.vote(rid, "u2", 1)
    assert await cstore.tally(rid) == [0, 2, 0]
    with pytest.raises(CompareError, match="失败"):
        await cstore.vote(rid, "u3", 2)  # the failed answer
    with pytest.raises(CompareError):
        await cstore.vote(rid, "u3", 7)
    with pytest.raises(CompareError):
        await cstore.vote(rid + 1, "u3", 0)


async def test_leaderboard_per_guild_with_win_rate_and_counts(cstore: CompareStore) -> None:
    q, e, s = ("qwen", "qwen-plus", True), ("ernie", "ernie-speed-128k", True), ("spark", "lite", True)
    r1 = await cstore.save(made_run("1", q, e), guild_id="g1")  # qwen wins 2:1
    r2 = await cstore.save(made_run("2", q, e, s), guild_id="g1")  # ernie wins
    r3 = await cstore.save(made_run("3", q, e), guild_id="g1")  # tie 1:1
    await cstore.save(made_run("4", q, e), guild_id="g1")  # no votes: not counted
    r5 = await cstore.save(made_run("5", q, ("spark", "lite", False)), guild_id="g1")  # failed answer left out
    other = await cstore.save(made_run("6", q, e), guild_id="g2")
    for user, run, pos in [("a", r1, 0), ("b", r1, 0), ("c", r1, 1), ("a", r2, 1), ("a", r3, 0), ("b", r3, 1),
                           ("a", r5, 0), ("z", other, 1)]:
        await cstore.vote(run, user, pos)
    board = {(x.provider, x.model): x for x in await cstore.leaderboard("g1")}
    qw, er, sp = board[("qwen", "qwen-plus")], board[("ernie", "ernie-speed-128k")], board[("spark", "lite")]
    assert (qw.runs, qw.wins, qw.ties, qw.votes) == (4, 2, 1, 4)  # r1, r2, r3, r5
    assert (er.runs, er.wins, er.ties, er.votes) == (3, 1, 1, 3)
    assert (sp.runs, sp.wins, sp.ties, sp.votes) == (1, 0, 0, 0)  # only r2: its r5 answer failed
    assert qw.win_rate == pytest.approx(0.5) and er.win_rate == pytest.approx(1 / 3)
    assert [x.provider for x in await cstore.leaderboard("g1")] == ["qwen", "ernie", "spark"]
    g2 = await cstore.leaderboard("g2")
    assert [(x.provider, x.wins, x.runs) for x in g2] == [("ernie", 1, 1), ("qwen", 0, 1)]
    assert await cstore.leaderboard(None) == []
    assert rank([], []) == []


async def test_tables_appear_in_a_store_opened_before_the_module(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/y.db")
    try:
        cs = CompareStore(store)
        rid = await cs.save(made_run("p", ("qwen", "m", True)))
        assert (await cs.vote(rid, "u", 0)).tally == [1]
        assert await store.version() >= 4
    finally:
        await store.close()


async def test_concurrent_votes_by_one_user_leave_one_vote(cstore: CompareStore) -> None:
    rid = await cstore.save(made_run("p", ("qwen", "m", True), ("ernie", "m", True)))
    await asyncio.gather(*(cstore.vote(rid, "u", i % 2) for i in range(6)), return_exceptions=True)
    assert sum(await cstore.tally(rid)) == 1


async def test_terminal_slash_compare_vote_and_top(app: App, quick: None) -> None:
    from bot.compare import slash_compare

    lines: list[str] = []
    run = await slash_compare(app, f"vllm,c {PROMPT}", lines.append)
    assert run is not None and [r.provider for r in run.results] == ["vllm", "c"]
    assert sum(1 for ln in lines if ln.startswith("── [")) == 2 and f"/compare vote {run.run_id}" in lines[-1]
    await slash_compare(app, f"vote {run.run_id} 2", lines.append)
    assert lines[-1].startswith("已投票") and "[0, 1]" in lines[-1]
    await slash_compare(app, f"vote #{run.run_id} 1", lines.append)
    assert lines[-1].startswith("已改票") and "[1, 0]" in lines[-1]
    await slash_compare(app, "top", lines.append)
    assert "vllm · fast-model  100% (1/0/1, 1 票)" in lines[-1]
    await slash_compare(app, f"vote {run.run_id} 9", lines.append)
    assert "没有第 9 个回答" in lines[-1]
    await slash_compare(app, "vote x", lines.append)
    assert "usage" in lines[-1]
    await slash_compare(app, "", lines.append)
    assert "/compare vote" in lines[-1]
    # no provider list: the chain's online providers (vllm, ollama, c), not offline
    run = await slash_compare(app, PROMPT, lines.append)
    assert run is not None and [r.provider for r in run.results] == ["vllm", "ollama", "c"]
