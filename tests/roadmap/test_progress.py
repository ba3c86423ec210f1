"""Progress on the roadmap with an injected clock, on a real SQLite file: quiz answers through
QuizService move topic mastery (right → up, wrong → down), FSRS retrievability decays as the clock
moves on, task marks and mastery place the learner on the path, and a server view aggregates."""

from __future__ import annotations

import io
import itertools
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app import App
from bot.config import load_settings
from bot.progress import (
    MASTERY_THRESHOLD,
    AnswerRow,
    ProgressError,
    ProgressStore,
    TopicMastery,
    path_position,
    server_progress,
    topic_mastery,
    user_progress,
)
from bot.quiz.bank import default_bank
from bot.quiz.session import QuizService
from bot.quiz.srs import SRS
from bot.quiz.store import QuizStore
from bot.roadmap import TOPIC_SLUGS, load, roadmap_json
from bot.roadmap_cli import done_command, roadmap_command, step_command
from tests.clocks import DateClock

T0 = datetime(2025, 3, 3, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai
U = "discord:1001"


class Clock(DateClock):
    def __init__(self, start: datetime = T0) -> None:
        super().__init__(start)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def app() -> AsyncIterator[App]:
    a = App(load_settings())
    try:
        yield a
    finally:
        await a.aclose()


async def quiz_service(app: App, clock: Clock, seed: int = 7) -> QuizService:
    qstore = await QuizStore.attach(await app.store())
    return QuizService(qstore, default_bank(), srs=SRS(fuzz=False), clock=clock, rng=random.Random(seed),
                       tz="Asia/Shanghai")


async def answer_session(svc: QuizService, clock: Clock, user: str, topic: str, n: int, right: bool,
                         guild: str | None = None) -> list[str]:
    """Answer a whole quiz session right (or wrong); returns the question ids."""
    s = await svc.start(user, topic, n, guild=guild)
    ids = []
    while (v := await s.next_question()) is not None:
        clock.advance(seconds=12)  # a third to two thirds of the time limit: rated Good when right
        q = v.question
        fb = await s.answer(user, q.answer if right else (q.answer + 1) % 4)
        assert fb.accepted and fb.correct is right
        ids.append(q.id)
    await s.finish()
    return ids


async def mastery_of(ps: ProgressStore, user: str, topic: str, now: datetime) -> TopicMastery:
    return (await user_progress(ps, user, now)).topics[topic]


# ---- mastery from quiz results ------------------------------------------------------------------------------

async def test_a_new_learner_knows_nothing_yet_and_starts_at_step_one(app: App, clock: Clock) -> None:
    ps = await ProgressStore.for_app(app)
    up = await user_progress(ps, U, clock.now)
    assert set(up.topics) == set(TOPIC_SLUGS)
    assert all(m.mastery == 0 and m.status == "unknown" and m.retrievability is None for m in up.topics.values())
    assert up.current is not None and up.current.number == 1 and up.current.step.id == "qs1"
    assert [s.state for s in up.steps[:3]] == ["current", "todo", "todo"] and up.completed == 0
    assert up.needs_work() == []


async def test_right_answers_raise_rlhf_mastery_and_wrong_answers_lower_it(app: App, clock: Clock) -> None:
    svc = await quiz_service(app, clock)
    ps = await ProgressStore.for_app(app)
    s = await svc.start(U, "rlhf", 4)
    seen = [0.0]
    while (v := await s.next_question()) is not None:
        clock.advance(seconds=12)
        await s.answer(U, v.question.answer)
        m = await mastery_of(ps, U, "rlhf", clock.now)
        assert m.mastery > seen[-1], "every right answer raises mastery"
        seen.append(m.mastery)
    await s.finish()
    m = await mastery_of(ps, U, "rlhf", clock.now)
    assert (m.answered, m.correct, m.questions, m.known) == (4, 4, 4, 4)
    # four right in a row just now: 4/(4+2) on both terms
    assert m.mastery == pytest.approx(4 / 6, abs=1e-6) and m.status == "mastered"
    assert m.retrievability == pytest.approx(1.0)
    # other topics are untouched
    up = await user_progress(ps, U, clock.now)
    assert all(t.mastery == 0 for k, t in up.topics.items() if k != "rlhf")

    s = await svc.start(U, "rlhf", 3)  # fresh questions first: now answered wrong
    while (v := await s.next_question()) is not None:
        clock.advance(seconds=12)
        fb = await s.answer(U, (v.question.answer + 1) % 4)
        assert fb.rating == "Again"
        m = await mastery_of(ps, U, "rlhf", clock.now)
        assert m.mastery < seen[-1], "every wrong answer lowers mastery"
        seen.append(m.mastery)
    m = await mastery_of(ps, U, "rlhf", clock.now)
    assert m.answered == 7 and m.correct == 4 and len(m.missed) == 3 and m.mastery < MASTERY_THRESHOLD
    assert [t.topic for t in (await user_progress(ps, U, clock.now)).needs_work()] == ["rlhf"]

    # a missed question answered right in review counts as known again
    clock.advance(hours=2)  # the missed cards are due after an hour
    review = await svc.start_review(U)
    assert review is not None
    before = m.mastery
    v = await review.next_question()
    assert v is not None
    clock.advance(seconds=12)
    await review.answer(U, v.question.answer)
    after = await mastery_of(ps, U, "rlhf", clock.now)
    assert after.mastery > before and len(after.missed) == 2


async def test_fsrs_retrievability_decays_as_the_clock_moves_on(app: App, clock: Clock) -> None:
    svc = await quiz_service(app, clock)
    ps = await ProgressStore.for_app(app)
    missed = await answer_session(svc, clock, U, "rlhf", 1, right=False)
    await answer_session(svc, clock, U, "rlhf", 3, right=True)
    clock.advance(hours=2)
    review = await svc.start_review(U)
    assert review is not None and await review.next_question() is not None
    clock.advance(seconds=12)
    await review.answer(U, default_bank().get(missed[0]).answer)  # type: ignore[union-attr]
    await review.finish()
    qstore = svc.qstore

    t_end = clock.now
    # the stored FSRS card is the one used for a question that has one
    row = await qstore.card_row(U, missed[0])
    assert row is not None
    stored = SRS.loads(row["card"])
    rows = [AnswerRow(missed[0], "rlhf", True, t_end.timestamp() - 1)]
    later = t_end + timedelta(days=10)
    alone = topic_mastery(U, rows, {missed[0]: stored}, later)["rlhf"]
    assert alone.retrievability == pytest.approx(SRS(fuzz=False).retrievability(stored, later))

    points = [t_end + timedelta(days=d) for d in (0, 1, 3, 10, 30, 90)]
    ms = [await mastery_of(ps, U, "rlhf", t) for t in points]
    rs = [m.retrievability for m in ms]
    assert rs[0] == pytest.approx(1.0, abs=1e-3)
    assert all(a is not None and b is not None and a > b for a, b in itertools.pairwise(rs)), rs
    assert all(a.mastery > b.mastery for a, b in itertools.pairwise(ms))
    assert ms[-1].mastery < MASTERY_THRESHOLD <= ms[0].mastery  # forgotten after three months
    # what the learner showed does not fade: the path position uses it
    assert len({round(m.attained, 9) for m in ms}) == 1 and ms[0].attained == pytest.approx(ms[0].mastery)
    # as of before the first answer nothing was known
    assert (await mastery_of(ps, U, "rlhf", T0 - timedelta(minutes=1))).answered == 0


def test_mastery_formula_by_hand() -> None:
    now = T0
    t = now.timestamp()
    rows = [AnswerRow("q1", "nlp", True, t - 60), AnswerRow("q2", "nlp", False, t - 30),
            AnswerRow("q3", "nlp", True, t)]
    m = topic_mastery("u", rows, {}, now)["nlp"]
    # A = 2/(3+2); M = (1 + 0 + 1)/(3+2) with R≈1 just after answering
    assert m.mastery == pytest.approx(0.5 * 2 / 5 + 0.5 * 2 / 5, abs=1e-3)
    assert (m.accuracy, m.missed, m.status) == (pytest.approx(2 / 3), ["q2"], "learning")
    # half-life: the same answers 30 days old weigh half
    aged = topic_mastery("u", rows, {}, now + timedelta(days=30))["nlp"]
    assert aged.mastery < m.mastery and aged.attained == pytest.approx(m.attained)


# ---- the position on the path -----------------------------------------------------------------------------------

def tm(topic: str, attained: float) -> TopicMastery:
    return TopicMastery(topic, mastery=attained, attained=attained, answered=5)


def test_a_step_is_complete_with_all_tasks_done_and_mastery_over_the_threshold() -> None:
    steps = load()
    qs1 = [t.id for t in steps[0].tasks]
    good = {"quickstart": tm("quickstart", 0.7), "llm_architecture": tm("llm_architecture", 0.6)}
    pos = path_position(steps, qs1, good)
    assert (pos[0].state, pos[0].complete, pos[1].state) == ("done", True, "current")
    assert pos[0].mastery == pytest.approx(0.65)
    # tasks done but mastery short: still the current step
    pos = path_position(steps, qs1, {"quickstart": tm("quickstart", 0.7)})
    assert pos[0].state == "current" and pos[0].mastery == pytest.approx(0.35)
    # mastery but a task open
    pos = path_position(steps, qs1[:-1], good)
    assert pos[0].state == "current" and pos[0].done_tasks == qs1[:-1]
    # a later step done early does not move the current step
    rlhf = next(s for s in steps if s.id == "rlhf")
    pos = path_position(steps, [t.id for t in rlhf.tasks], {"rlhf": tm("rlhf", 0.9)})
    assert pos[0].state == "current" and next(p for p in pos if p.step.id == "rlhf").state == "done"
    # everything done: no current step
    everything = [t.id for s in steps for t in s.tasks]
    pos = path_position(steps, everything, {t: tm(t, 1.0) for t in TOPIC_SLUGS})
    assert all(p.state == "done" for p in pos)


async def test_marking_tasks_moves_the_learner_along_and_survives_a_restart(app: App, clock: Clock) -> None:
    svc = await quiz_service(app, clock)
    ps = await ProgressStore.for_app(app)
    for t in load()[0].tasks:
        assert await ps.mark(U, t.id, clock.now, guild="g1")
    assert not await ps.mark(U, "qs1-t1", clock.now)  # idempotent
    with pytest.raises(ProgressError, match="no such task"):
        await ps.mark(U, "qs9-t9", clock.now)
    assert (await user_progress(ps, U, clock.now)).current.step.id == "qs1"  # type: ignore[union-attr]
    await answer_session(svc, clock, U, "quickstart", 4, right=True)
    await answer_session(svc, clock, U, "llm_architecture", 4, right=True)
    up = await user_progress(ps, U, clock.now)
    assert up.steps[0].complete and up.current is not None and up.current.step.id == "qs2"
    # a month away: mastery fades, the position holds
    later = await user_progress(ps, U, clock.now + timedelta(days=40))
    assert later.topics["quickstart"].mastery < MASTERY_THRESHOLD and later.current.step.id == "qs2"  # type: ignore[union-attr]

    await app.aclose()  # restart on the same SQLite file
    again = App(load_settings())
    try:
        ps2 = await ProgressStore.for_app(again)
        up2 = await user_progress(ps2, U, clock.now)
        assert up2.current is not None and up2.current.step.id == "qs2" and up2.done_tasks >= {"qs1-t1", "qs1-t3"}
        assert await ps2.unmark(U, "qs1-t2") and not await ps2.unmark(U, "qs1-t2")
        assert (await user_progress(ps2, U, clock.now)).current.step.id == "qs1"  # type: ignore[union-attr]
    finally:
        await again.aclose()


# ---- the server view ---------------------------------------------------------------------------------------------

async def test_server_view_aggregates_the_members_of_a_guild(app: App, clock: Clock) -> None:
    svc = await quiz_service(app, clock)
    ps = await ProgressStore.for_app(app)
    await answer_session(svc, clock, "discord:1", "rlhf", 4, right=True, guild="g1")
    await answer_session(svc, clock, "discord:2", "rlhf", 2, right=False, guild="g1")
    await answer_session(svc, clock, "discord:3", "rlhf", 4, right=True, guild="g2")  # another server
    await ps.mark("discord:4", "qs1-t1", clock.now, guild="g1")  # a member who only marked a task
    sv = await server_progress(ps, "g1", clock.now)
    assert sv.members == ["discord:1", "discord:2", "discord:4"]
    m1 = (await user_progress(ps, "discord:1", clock.now)).topics["rlhf"].mastery
    m2 = (await user_progress(ps, "discord:2", clock.now)).topics["rlhf"].mastery
    mean, learners = sv.topics["rlhf"]
    assert learners == 2 and mean == pytest.approx((m1 + m2) / 2)
    assert sv.topics["nlp"] == (0.0, 0)
    assert sv.at_step == {"qs1": 3} and sv.finished == 0
    assert ps is not None and len(await ps.activity(guild="g1")) == 6
    doc = sv.as_dict()
    assert doc["members"] == 3 and doc["topics"]["rlhf"]["learners"] == 2


# ---- the CLI-facing functions ------------------------------------------------------------------------------------

async def test_roadmap_json_keeps_the_design_shape_and_adds_progress_only_when_asked(app: App, clock: Clock,
                                                                                     isolated_env: Path) -> None:
    out = io.StringIO()
    assert await roadmap_command(app, True, U, out, now=clock.now) == 0
    assert json.loads(out.getvalue()) == json.loads(json.dumps(roadmap_json()))
    assert not (isolated_env / "studybot.db").exists()  # the plain roadmap needs no database

    svc = await quiz_service(app, clock)
    await answer_session(svc, clock, U, "quickstart", 3, right=True)
    await ProgressStore.for_app(app)
    assert await done_command(app, "qs1-t1", U, io.StringIO(), now=clock.now) == 0
    out = io.StringIO()
    assert await roadmap_command(app, True, U, out, progress=True, now=clock.now) == 0
    doc = json.loads(out.getvalue())
    required = {"id", "title", "goals", "tasks", "notes", "quiz_topics", "commands"}
    assert [s["id"] for s in doc["steps"]] == [s["id"] for s in roadmap_json()["steps"]]
    for s in doc["steps"]:
        assert required <= s.keys() and {"done_tasks", "mastery", "complete", "state", "number"} <= s.keys()
    first = doc["steps"][0]
    assert first["done_tasks"] == ["qs1-t1"] and first["state"] == "current" and first["tasks_total"] == 3
    prog = doc["progress"]
    assert prog["current_step"] == "qs1" and prog["user"] == U and prog["mastery_threshold"] == MASTERY_THRESHOLD
    assert prog["topics"]["quickstart"]["answered"] == 3 and prog["topics"]["nlp"]["status"] == "unknown"

    out = io.StringIO()
    assert await roadmap_command(app, False, U, out, now=clock.now) == 0
    text = out.getvalue()
    assert "▶  1. [qs1] 基础认知  任务 1/3" in text and "已完成 0/" in text


async def test_step_details_and_marking_from_the_command_line(app: App, clock: Clock) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert await done_command(app, "qs3-t2", U, out, now=clock.now) == 0
    assert "✓ 已完成 / done: qs3-t2" in out.getvalue() and "任务 1/4" in out.getvalue()
    out = io.StringIO()
    assert await step_command(app, "3", U, out, now=clock.now) == 0
    text = out.getvalue()
    assert text.startswith("3. API 应用（qs3 · quickstart）")
    assert "[✓] qs3-t2" in text and "[ ] qs3-t1" in text and "产出 / output:" in text
    assert "目标 / goals:" in text and "knowledge/llm_apis.md" in text and "未测 / not quizzed" in text
    out = io.StringIO()
    assert await step_command(app, "rlhf", U, out, json_out=True, now=clock.now) == 0
    doc = json.loads(out.getvalue())
    assert doc["id"] == "rlhf" and doc["quiz_topics"] == ["rlhf"] and doc["done_tasks"] == []
    assert await roadmap_command(app, False, U, io.StringIO(), step="99", err=err, now=clock.now) == 2
    assert "没有第 99 步" in err.getvalue() and "no step" in err.getvalue()
    err = io.StringIO()
    assert await done_command(app, "nope", U, io.StringIO(), err=err, now=clock.now) == 2
    assert "没有这个任务" in err.getvalue() and "no such task" in err.getvalue()
    out = io.StringIO()
    assert await done_command(app, "qs3-t2", U, out, undo=True, now=clock.now) == 0
    assert "unmarked" in out.getvalue()


async def test_terminal_slash_commands(app: App, clock: Clock, tmp_path: Path) -> None:
    from bot.roadmap_cli import slash

    shown: list[str] = []
    for cmd, arg in (("/roadmap", ""), ("/roadmap", "done qs1-t2"), ("/roadmap", "step 1"), ("/roadmap", "rlhf"),
                     ("/roadmap", "undo qs1-t2"), ("/roadmap", "a b c"), ("/roadmap", "99"), ("/plan", "30"),
                     ("/plan", "5"), ("/progress", str(tmp_path / "t.png")), ("/remind", "08:30"),
                     ("/remind", "off")):
        await slash(app, cmd, arg, shown.append, now=clock.now)
    assert shown[0].startswith("学习路线 / study roadmap")
    assert shown[1].startswith("✓ 已完成 / done: qs1-t2")
    assert shown[2].startswith("1. 基础认知") and "[✓] qs1-t2" in shown[2]
    assert "偏好对齐" in shown[3] and "unmarked" in shown[4]
    assert shown[5].startswith("用法 / usage") and shown[6].startswith("⚠ 没有第 99 步")
    assert "每天约 30 分钟" in shown[7] and shown[8].startswith("⚠ 每日学习时间")
    assert "图表已保存" in shown[9] and (tmp_path / "t.png").stat().st_size > 0
    assert "08:30" in shown[10] and "已关闭" in shown[11]
