"""The terminal quiz reads answers from a text stream (a real pipe here), prints feedback with the
note reference, and ends with the score; the chat's /quiz command drives the same flow."""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import App
from bot.config import load_settings
from bot.quiz.bank import default_bank
from bot.quiz.session import QuizService
from bot.quiz.srs import SRS
from bot.quiz.store import QuizStore
from bot.quiz.terminal import USER, QuizCommand, parse_choice, run_quiz
from bot.store import Store
from tests.conftest import clean_env, run_cli

from .conftest import Clock, db_url


@pytest.fixture
async def app() -> AsyncIterator[App]:
    a = App(load_settings())
    yield a
    await a.aclose()


async def _service(app: App, clock: Clock, seed: int = 3) -> QuizService:
    return QuizService(await QuizStore.attach(await app.store()), default_bank(), srs=SRS(fuzz=False),
                       clock=clock, rng=random.Random(seed), tz=app.settings.zone)


async def _planned_ids(tmp_path: Path, clock: Clock, topic: str, count: int, seed: int = 3) -> list[str]:
    """The questions a fresh user gets with this seed (a dry run on a scratch database)."""
    store = await Store.open(db_url(tmp_path, "plan.db"))
    try:
        svc = QuizService(await QuizStore.attach(store), default_bank(), rng=random.Random(seed), clock=clock)
        return list((await (await svc.start(USER, topic, count)).info())["question_ids"])
    finally:
        await store.close()


def _pipe(text: str) -> io.TextIOWrapper:
    r, w = os.pipe()
    os.write(w, text.encode())
    os.close(w)
    return open(r, encoding="utf-8")  # the caller closes it


@pytest.mark.parametrize(("line", "choice"), [("1", 0), ("4", 3), ("a", 0), ("D", 3), (" b. ", 1), ("Ｃ", 2),
                                              ("3)", 2), ("5", None), ("ab", None), ("", None)])
def test_parse_choice(line: str, choice: int | None) -> None:
    assert parse_choice(line) == choice


async def test_piped_answers_run_a_whole_rlhf_quiz_and_print_the_score(app: App, clock: Clock,
                                                                      tmp_path: Path) -> None:
    bank = default_bank()
    ids = await _planned_ids(tmp_path, clock, "rlhf", 5)
    qs = [bank.get(i) for i in ids]
    assert all(q is not None for q in qs)
    ans = [q.answer for q in qs]  # type: ignore[union-attr]
    # right, right, wrong, junk then right as a letter, wrong
    script = [str(ans[0] + 1), str(ans[1] + 1), str((ans[2] + 1) % 4 + 1), "xyz", "ABCD"[ans[3]].lower(),
              str((ans[4] + 1) % 4 + 1)]
    out, err = io.StringIO(), io.StringIO()
    with _pipe("\n".join(script) + "\n") as inp:
        code = await run_quiz(app, "rlhf", 5, inp, out, clock, err=err, service=await _service(app, clock))
    text = out.getvalue()
    assert code == 0 and err.getvalue() == ""
    assert "测验 / Quiz · rlhf · 5 题 / questions" in text
    assert [f"[{i}/5]" in text for i in range(1, 6)] == [True] * 5
    assert text.count("✓ 正确 / correct") == 3 and text.count("✗ 错误 / wrong") == 2
    assert "请输入 1-4 或 A-D" in text  # the junk line was refused, not counted
    for q in qs:
        assert f"参考 / see: {q.ref_path} › {q.ref_heading}" in text  # type: ignore[union-attr]
    assert "得分 / score: 3/5 正确 / correct · 450 分 / points" in text  # instant answers: 150 each
    assert f"错题 / missed: {ids[2]}, {ids[4]}" in text


async def test_end_of_input_and_quit_finish_early(app: App, clock: Clock) -> None:
    out = io.StringIO()
    assert await run_quiz(app, "nlp", 5, io.StringIO("1\n2\n"), out, clock) == 0
    assert "提前结束 / stopped early: 2/5" in out.getvalue()
    out = io.StringIO()
    assert await run_quiz(app, "nlp", 3, io.StringIO("q\n1\n"), out, clock) == 0
    assert "得分 / score: 0/3" in out.getvalue() and "[2/3]" not in out.getvalue()


async def test_unknown_topic_is_a_clear_error(app: App, clock: Clock) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await run_quiz(app, "cooking", 5, io.StringIO(""), out, clock, err=err) == 2
    assert "unknown topic 'cooking'" in err.getvalue() and "rlhf" in err.getvalue() and out.getvalue() == ""


async def test_review_in_the_terminal_offers_missed_questions_when_due(app: App, clock: Clock) -> None:
    svc = await _service(app, clock)
    out = io.StringIO()
    await run_quiz(app, "evaluation", 3, io.StringIO("1\n1\n1\n"), out, clock, service=svc)
    missed = out.getvalue().split("错题 / missed: ")[1].split("\n")[0].split(", ")
    assert missed and missed[0]
    out = io.StringIO()
    await run_quiz(app, None, 10, io.StringIO(""), out, clock, review=True, service=svc)
    assert "没有到期的复习 / nothing due for review" in out.getvalue()
    clock.advance(hours=2)
    answers = "".join(f"{default_bank().get(q).answer + 1}\n" for q in missed)  # type: ignore[union-attr]
    out = io.StringIO()
    await run_quiz(app, None, 10, io.StringIO(answers), out, clock, review=True, service=svc)
    text = out.getvalue()
    assert f"复习 / Review · {len(missed)} 题" in text
    assert f"得分 / score: {len(missed)}/{len(missed)}" in text


async def test_chat_quiz_command_takes_answers_as_plain_lines(app: App, clock: Clock) -> None:
    cmd = QuizCommand(app, clock=clock)
    assert "/quiz review" in await cmd.command("help")
    assert "unknown topic" in await cmd.command("cooking")
    first = await cmd.command("rag 2")
    assert "rag · 2 题" in first and cmd.active
    assert "[2/2]" in await cmd.feed("1")
    last = await cmd.feed("B")
    assert "得分 / score:" in last and not cmd.active
    assert "成绩 / stats:" in await cmd.command("stats")
    assert USER in await cmd.command("leaderboard")
    assert "没有待审核的草稿" in await cmd.command("queue")
    await cmd.command("nlp 3")
    assert "提前结束" in await cmd.command("stop")


def test_studybot_quiz_cli_with_piped_stdin(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    res = run_cli(["quiz", "--topic", "rlhf"], env, stdin="1\nB\n3\nd\n2\n")
    assert res.returncode == 0, res.stderr
    assert "得分 / score:" in res.stdout and "/5 正确 / correct" in res.stdout
    bank = run_cli(["quiz", "bank", "--json"], env)
    assert bank.returncode == 0, bank.stderr
    rows = json.loads(bank.stdout)
    assert len(rows) >= 200 and set(rows[0]) >= {"id", "topic", "question", "options", "answer", "ref"}
