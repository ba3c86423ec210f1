"""Issue 8, must show 1, through the real CLI: `studybot compare ... --providers a,b,c --json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compare import test_compare as tc
from tests.conftest import arun_cli, clean_env
from tests.stubs.http_server import StubServer


async def test_compare_cli_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # longer delays than the in-process test: a fresh process pays a one-time start-up cost
    monkeypatch.setitem(tc.FAST, "first", 1.0)
    monkeypatch.setitem(tc.FAST, "chunk", 0.1)
    monkeypatch.setitem(tc.SLOW, "first", 1.5)
    monkeypatch.setitem(tc.SLOW, "chunk", 0.15)
    async with StubServer(tc.handler) as s:
        env = clean_env(tmp_path, STUDYBOT_EXTRA_PROVIDERS=f"a={s.url}/fast/v1,b={s.url}/broken/v1,c={s.url}/slow/v1",
                        A_MODEL="fast-model", C_MODEL="deepseek-chat")
        code, out, err = await arun_cli(["compare", "什么是KV cache", "--providers", "a,b,c", "--json"], env)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["prompt"] == "什么是KV cache"
    res = {r["provider"]: r for r in doc["results"]}
    assert set(res) == {"a", "b", "c"}
    assert res["b"]["error"] and res["b"]["answer"] == ""
    for name, delays in (("a", tc.FAST), ("c", tc.SLOW)):
        r = res[name]
        assert r["error"] is None and r["answer"]
        ttft, total = tc.expected(delays, 4)
        assert abs(r["ttft_ms"] - ttft) <= 0.2 * ttft, (name, r["ttft_ms"], ttft)
        assert abs(r["total_ms"] - total) <= 0.2 * total, (name, r["total_ms"], total)
        assert {"model", "tokens_in", "tokens_out", "cost"} <= r.keys()
