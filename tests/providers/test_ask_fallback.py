"""The issue's acceptance check, end to end through the real CLI in a subprocess.

One loopback stub serves three providers by path prefix: Spark answers HTTP 200 with a
business error code in the JSON body (11202, QPS over the limit), Qwen answers 503, vLLM
streams a normal reply. `studybot ask --json` must answer from vLLM, say what happened to
the others in `attempts`, and the call records in the data dir's SQLite database must show
each failure with its error kind and one ok record for vLLM.
"""

from __future__ import annotations

import json
import resource
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import arun_cli, clean_env
from tests.stubs.http_server import Reply, Request, Script, StubServer
from tests.stubs.openai_wire import midstream_error, spark_body_error, text_stream

VLLM_PIECES = ["你好！", "我是", "本地", " vLLM ", "模型。"]
VLLM_TEXT = "".join(VLLM_PIECES)


@pytest.fixture
def data_dir(kb_data_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's prebuilt data dir: this test's call records are its own."""
    d = tmp_path / "data"
    shutil.copytree(kb_data_dir, d, ignore=shutil.ignore_patterns("studybot.db*"))
    return d


class Stamped(Script):
    """A Script that also notes when each request arrived (perf_counter, path)."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[tuple[float, str]] = []

    def __call__(self, req: Request) -> Reply:
        self.stamps.append((time.perf_counter(), req.path))
        return super().__call__(req)


@pytest.fixture
async def stub() -> AsyncIterator[tuple[StubServer, Stamped]]:
    script = Stamped()
    server = await StubServer(script).start()
    try:
        yield server, script
    finally:
        await server.close()


def env_for(data_dir: Path, url: str, chain: str = "spark,qwen,vllm") -> dict[str, str]:
    return clean_env(data_dir, STUDYBOT_PROVIDERS=chain, SPARK_API_PASSWORD="x", DASHSCOPE_API_KEY="y",
                     SPARK_BASE_URL=url + "/spark/v1", QWEN_BASE_URL=url + "/qwen/v1",
                     VLLM_BASE_URL=url + "/vllm/v1", VLLM_MODEL="m")


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def call_records(data_dir: Path) -> list[dict[str, object]]:
    db = data_dir / "studybot.db"
    assert db.exists(), "no database in the data dir"
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM call_records ORDER BY id")]


def serve_acceptance(script: Stamped) -> None:
    script.routes.update({
        "/spark/v1/chat/completions": [spark_body_error(11202, "AppIdQpsOverFlowError")],
        "/qwen/v1/chat/completions": [Reply.json({"error": {"message": "service unavailable",
                                                            "code": "server_high_load"}}, 503)],
        "/vllm/v1/chat/completions": [text_stream(VLLM_PIECES, model="m")],
    })


async def test_ask_falls_back_past_spark_body_code_and_qwen_503_to_vllm(
        data_dir: Path, stub: tuple[StubServer, Stamped]) -> None:
    server, script = stub
    serve_acceptance(script)
    code, out, err = await arun_cli(["ask", "你好", "--json"], env_for(data_dir, server.url))
    assert code == 0, err
    doc = json.loads(out)  # stdout carries only the JSON document
    assert doc["provider"] == "vllm"
    assert doc["answer"] == VLLM_TEXT
    assert "note" not in doc

    attempts = doc["attempts"]
    seen = {(a["provider"], a["outcome"], a["error_kind"]) for a in attempts}
    assert ("spark", "error", "rate_limited") in seen
    assert ("qwen", "error", "unavailable") in seen
    assert attempts[-1]["provider"] == "vllm" and attempts[-1]["outcome"] == "ok"
    assert [a["provider"] for a in attempts] == sorted((a["provider"] for a in attempts),
                                                        key=["spark", "qwen", "vllm"].index)  # chain order
    assert sum(a["provider"] == "spark" for a in attempts) <= 2  # at most one quick retry each
    assert sum(a["provider"] == "qwen" for a in attempts) <= 2
    assert next(a for a in attempts if a["provider"] == "spark")["error_code"] == "11202"
    # the fallback itself (first Spark request to the vLLM request): quick retries only, no long backoff
    span = script.stamps[-1][0] - script.stamps[0][0]
    assert script.stamps[-1][1].startswith("/vllm/") and span < 2.0, f"fallback took {span:.2f} s"

    # what each provider was sent: vLLM got the question and the model of VLLM_MODEL
    vllm_reqs = [r for r in server.requests if r.path.startswith("/vllm/")]
    assert len(vllm_reqs) == 1
    body = vllm_reqs[0].json()
    assert body["model"] == "m" and body["stream"] is True
    assert body["messages"][-1] == {"role": "user", "content": "你好"}
    spark_req = next(r for r in server.requests if r.path.startswith("/spark/"))
    assert spark_req.headers["authorization"] == "Bearer x"

    rows = call_records(data_dir)
    by = [(r["provider"], r["outcome"], r["error_kind"]) for r in rows]
    assert ("spark", "error", "rate_limited") in by
    assert ("qwen", "error", "unavailable") in by
    assert by.count(("vllm", "ok", None)) == 1
    assert len(rows) == len(attempts)  # every attempt recorded, nothing else
    assert {r["purpose"] for r in rows} == {"ask"}
    ok = next(r for r in rows if r["outcome"] == "ok")
    assert ok["model"] == "m" and ok["ttft_ms"] is not None and ok["tokens_in"] == 12
    assert ok["tokens_out"] == len(VLLM_PIECES)
    assert next(r for r in rows if r["provider"] == "spark")["error_code"] == "11202"


async def test_ask_stream_cut_after_first_delta_keeps_partial_text_and_says_so(
        data_dir: Path, stub: tuple[StubServer, Stamped]) -> None:
    server, script = stub
    script.routes.update({
        "/vllm/v1/chat/completions": [midstream_error(["第一段", "回答"], "engine crashed")],
        "/qwen/v1/chat/completions": [text_stream(["千问不该回答"])],
    })
    code, out, err = await arun_cli(["ask", "你好", "--json"], env_for(data_dir, server.url, "vllm,qwen"))
    assert out.strip(), err
    doc = json.loads(out)
    assert "第一段回答" in doc["answer"]
    assert "千问" not in doc["answer"]
    note = doc.get("note") or ""
    assert code != 0 or note, "an interrupted answer must fail or carry a note"
    assert "中断" in note or "cut off" in note
    assert [(a["provider"], a["outcome"]) for a in doc["attempts"]] == [("vllm", "interrupted")]
    assert not [r for r in server.requests if r.path.startswith("/qwen/")]  # no fallback behind the user's back

    rows = call_records(data_dir)
    assert [(r["provider"], r["outcome"]) for r in rows] == [("vllm", "interrupted")]
    assert rows[0]["error_kind"] == "unavailable" and rows[0]["ttft_ms"] is not None
