"""Generated questions: strict JSON, one answer, grounded in the cited chunk, reviewed before they
join the bank. The LLM is a loopback OpenAI-compatible server; retrieval is the real index."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config import load_settings
from bot.knowledge.chunk import Chunk
from bot.quiz.generate import (
    DraftError,
    approve,
    check_draft,
    generate_questions,
    grounding,
    parse_reply,
    reject,
)
from bot.quiz.session import QuizError
from bot.quiz.store import QuizStore
from bot.quiz.terminal import dump_bank, run_decide, run_generate, run_queue
from tests.stubs import openai_wire as W
from tests.stubs.http_server import Request, Script, StubServer

TEXT = ("DPO（直接偏好优化）把奖励模型隐式地写进策略里，直接用偏好数据训练策略模型，不需要单独训练奖励模型，"
        "也不需要强化学习采样。它仍然需要一个冻结的参考模型来计算对数比。β 控制约束强度，常见取值约为 0.1。")
CHUNK = Chunk("knowledge/rlhf.md", "偏好对齐", "DPO：直接偏好优化", ["偏好对齐", "DPO：直接偏好优化"], 77, 86, TEXT,
              "rlhf")


def draft(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"chunk": 1, "question": "标准 DPO 训练时除了策略模型还需要什么？",
                         "options": ["冻结的参考模型", "价值模型", "独立训练的奖励模型", "判别器"], "answer": 0,
                         "explanation": "DPO 用参考模型计算对数比，不需要单独的奖励模型。", "difficulty": "medium"}
    d.update(over)
    return d


def test_a_grounded_draft_passes_with_its_reference() -> None:
    d = check_draft(draft(), [CHUNK], "rlhf")
    assert d.payload["ref"] == {"path": "knowledge/rlhf.md", "heading": "DPO：直接偏好优化"}
    assert d.payload["answer"] == 0 and d.grounding == 1.0
    # answers may also come as a letter or as per-option flags
    assert check_draft(draft(answer="A"), [CHUNK], "rlhf").payload["answer"] == 0
    flagged = draft(options=[{"text": "价值模型"}, {"text": "冻结的参考模型", "correct": True}, {"text": "判别器"},
                             {"text": "独立训练的奖励模型"}])
    del flagged["answer"]
    assert check_draft(flagged, [CHUNK], "rlhf").payload["answer"] == 1


@pytest.mark.parametrize(("over", "needle"), [
    ({"answer": [0, 2]}, "exactly one correct option required, got 2"),
    ({"answers": [1, 3]}, "exactly one correct option required"),
    ({"options": [{"text": "冻结的参考模型", "correct": True}, {"text": "价值模型", "correct": True},
                  {"text": "判别器"}, {"text": "独立训练的奖励模型"}], "answer": None}, "exactly one correct option"),
    ({"options": ["冻结的参考模型", "价值模型", "判别器"]}, "exactly 4 options required, got 3"),
    ({"options": ["冻结的参考模型", "价值模型", "冻结的参考模型 ", "判别器"]}, "distinct"),
    ({"answer": 4}, "answer must be one index 0-3"),
    ({"explanation": " "}, "missing explanation"),
    ({"chunk": 3}, "chunk must cite passage 1-1"),
    ({"options": ["量子纠缠的拓扑超导体", "价值模型", "判别器", "独立训练的奖励模型"]}, "not grounded"),
    ({"difficulty": "expert"}, "difficulty"),
])
def test_bad_drafts_are_refused_with_a_clear_message(over: dict[str, Any], needle: str) -> None:
    raw = draft(**over)
    if raw.get("answer") is None:
        raw.pop("answer")
    with pytest.raises(DraftError, match=re.escape(needle)):
        check_draft(raw, [CHUNK], "rlhf")


def test_numeric_answers_are_grounded_through_their_explanation() -> None:
    calc = draft(question="β 取常见值时约为多少？", options=["0.1", "1", "10", "0.5"],
                 explanation="β 控制约束强度，常见取值约为 0.1。")
    assert check_draft(calc, [CHUNK], "rlhf").payload["answer"] == 0
    assert grounding("0.731", TEXT) == 0.0


def test_replies_must_be_strict_json() -> None:
    assert parse_reply('```json\n{"questions": []}\n```') == []
    assert parse_reply("[1]") == [1]
    with pytest.raises(DraftError, match="not valid JSON"):
        parse_reply('好的，下面是题目：{"questions": []}')
    with pytest.raises(DraftError, match='no "questions" list'):
        parse_reply('{"items": []}')


# ---- end to end over a loopback LLM ------------------------------------------------------------------

_PASSAGE = re.compile(r"\[(\d+)\] \((knowledge/\S+) › ([^)\n]+)\)\n(.*?)(?=\n\n\[\d+\] \(|\Z)", re.S)


def _drafts_from(req: Request) -> str:
    """Like a model: one question quoting passage 1, one with two answers, one made up."""
    user = req.json()["messages"][1]["content"]
    passages = _PASSAGE.findall(user)
    assert passages, user
    text = passages[0][3]
    phrase = max(re.findall(r"[\u4e00-\u9fff]{6,}", text), key=len)[:14]
    good = {"chunk": 1, "question": f"根据笔记，下面哪一句出自“{passages[0][2]}”一节？",
            "options": [phrase, "与本节无关的说法甲", "与本节无关的说法乙", "与本节无关的说法丙"], "answer": 0,
            "explanation": f"原文：{phrase}", "difficulty": "easy"}
    two = {**good, "question": "两个答案的题", "answer": [0, 1]}
    made_up = {**good, "question": "编造的题", "options": ["火星殖民地的税收制度", "甲", "乙", "丙"]}
    return json.dumps({"questions": [good, two, made_up]}, ensure_ascii=False)


@pytest.fixture
async def llm_app(monkeypatch: pytest.MonkeyPatch, kb_data_dir: Path, tmp_path: Path) -> AsyncIterator[
        tuple[App, StubServer]]:
    replies = iter([lambda r: W.completion(_drafts_from(r)), lambda r: W.completion("抱歉，我不能输出 JSON。")])
    server = await StubServer(Script({"/chat/completions": lambda req: next(replies)(req)})).start()
    monkeypatch.setenv("STUDYBOT_DATA_DIR", str(kb_data_dir))
    monkeypatch.setenv("STUDYBOT_DATABASE_URL", f"sqlite:///{tmp_path}/gen.db")
    monkeypatch.setenv("STUDYBOT_PROVIDERS", "vllm")
    monkeypatch.setenv("VLLM_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("VLLM_MODEL", "stub-model")
    app = App(load_settings())
    yield app, server
    await app.aclose()
    await server.close()


async def test_generate_queue_approve_then_the_bank_has_it(llm_app: tuple[App, StubServer]) -> None:
    app, server = llm_app
    out, err = io.StringIO(), io.StringIO()
    assert await run_generate(app, "rlhf", 3, focus="DPO 参考模型", json_out=True, out=out, err=err) == 0
    rep = json.loads(out.getvalue())
    req = server.requests[0].json()
    assert req["stream"] is False and req["messages"][0]["role"] == "system" and "JSON" in req["messages"][0]["content"]
    assert "knowledge/rlhf.md ›" in req["messages"][1]["content"]
    assert len(rep["queued"]) == 1 and rep["provider"] == "vllm"
    assert any("exactly one correct option" in r for r in rep["rejected"])
    assert any("not grounded" in r for r in rep["rejected"])
    [(did, _)] = [(d["id"], d["question"]) for d in rep["queued"]]

    out = io.StringIO()
    await run_queue(app, json_out=True, out=out)
    [queued] = json.loads(out.getvalue())
    assert queued["id"] == did and queued["ref"]["path"] == "knowledge/rlhf.md"

    before = await dump_bank(app)
    out = io.StringIO()
    assert await run_decide(app, "approve", did, out=out) == 0
    assert f"gen-rlhf-{did:04d}" in out.getvalue()
    after = await dump_bank(app)
    assert len(after) == len(before) + 1
    added = next(r for r in after if r["id"] == f"gen-rlhf-{did:04d}")
    assert added["topic"] == "rlhf" and added["answer"] == 0 and added["ref"] == queued["ref"]
    err = io.StringIO()
    assert await run_decide(app, "approve", did, err=err) == 2
    assert "already approved" in err.getvalue()

    # the model's second reply is not JSON: nothing queued, a clear reason
    rep2 = await generate_questions(app, "rlhf", 2)
    assert rep2.queued == [] and "not valid JSON" in rep2.rejected[0]


async def test_a_draft_whose_reference_does_not_exist_cannot_be_approved(tmp_path: Path) -> None:
    from bot.store import Store

    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/q.db")
    try:
        qs = await QuizStore.attach(store)
        payload = check_draft(draft(), [CHUNK], "rlhf").payload
        bad = {**payload, "ref": {"path": "knowledge/rlhf.md", "heading": "一个不存在的标题"}}
        did = await qs.add_draft(topic="rlhf", payload=bad, chunk={"path": "", "heading": "", "text": ""},
                                 fingerprint="f1", provider="stub", model="m", now=0.0)
        assert did is not None
        with pytest.raises(QuizError, match=re.escape("heading not found in knowledge/rlhf.md: '一个不存在的标题'")):
            await approve(qs, did)
        # the same draft queued again is a duplicate, not a second row
        assert await qs.add_draft(topic="rlhf", payload=bad, chunk={}, fingerprint="f1", provider=None, model=None,
                                  now=1.0) is None
        await reject(qs, did, by="admin", note="bad ref")
        assert (await qs.draft(did))["status"] == "rejected"  # type: ignore[index]
        with pytest.raises(QuizError, match="no draft #999"):
            await approve(qs, 999)
    finally:
        await store.close()


async def test_the_offline_engine_cannot_write_questions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STUDYBOT_PROVIDERS", "offline")
    app = App(load_settings())
    try:
        with pytest.raises(QuizError, match="needs an LLM provider"):
            await generate_questions(app, "rlhf")
        with pytest.raises(QuizError, match="unknown topic"):
            await generate_questions(app, "cooking")
    finally:
        await app.aclose()
