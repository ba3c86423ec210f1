"""The 7-day plan: deterministic, within the daily budget, opening each day with due reviews,
weak topics first (re-read the sections of missed questions, then a quiz), then the current
step's reading, open tasks and quizzes; finished work left out."""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta

import pytest

from bot.app import App
from bot.plan import (
    DEFAULT_BUDGET_MIN,
    MIN_CHUNK,
    READ_MIN,
    build_plan,
    check_budget,
    due_per_day,
    note_sections,
    pack,
    plan_for,
    render_plan,
    task_minutes,
)
from bot.progress import ProgressStore, TopicMastery, UserProgress, path_position
from bot.quiz.bank import default_bank
from bot.roadmap import TOPIC_SLUGS, load
from bot.roadmap_cli import plan_command, plan_text

from .test_progress import Clock, U, answer_session, app, clock, quiz_service  # noqa: F401 - fixtures

START = date(2025, 3, 3)  # a Monday


def progress_of(done: set[str] = frozenset(), topics: dict[str, float] | None = None,  # type: ignore[assignment]
                answered: int = 5) -> UserProgress:
    tms = {t: TopicMastery(t) for t in TOPIC_SLUGS}
    for t, m in (topics or {}).items():
        tms[t] = TopicMastery(t, mastery=m, attained=m, answered=answered)
    return UserProgress(U, datetime(2025, 3, 3, 4), tms, path_position(load(), done, tms), set(done),
                        "Asia/Shanghai")


def items(plan):  # type: ignore[no-untyped-def]
    return [i for d in plan.days for i in d.items]


def test_a_new_learner_starts_with_the_quickstart_reading_and_tasks() -> None:
    plan = build_plan(progress_of(), start=START)
    assert len(plan.days) == 7 and [d.day for d in plan.days] == [START + timedelta(days=i) for i in range(7)]
    assert plan.current_step == "qs1" and plan.current_number == 1 and plan.needs_work == []
    assert all(d.minutes <= DEFAULT_BUDGET_MIN for d in plan.days)
    assert sum(d.minutes for d in plan.days) >= 7 * DEFAULT_BUDGET_MIN - 7 * MIN_CHUNK  # the week is used
    flat = items(plan)
    reads = [i for i in flat if i.kind == "read" and i.step_id == "qs1"]
    assert [i.heading for i in reads] == list(note_sections("knowledge/quickstart.md"))[:len(reads)]
    assert all(i.minutes == READ_MIN and i.command.startswith("studybot kb search") for i in reads)
    qs1_tasks = [i.task_id for i in flat if i.kind == "task" and not i.continued and i.step_id == "qs1"]
    assert qs1_tasks == ["qs1-t1", "qs1-t2", "qs1-t3"]
    # reading, then tasks, then the step's quizzes: the order of learning
    kinds = [i.kind for i in flat if i.step_id == "qs1"]
    assert kinds.index("task") > max(k for k, v in enumerate(kinds) if v == "read")
    assert kinds.index("quiz") > max(k for k, v in enumerate(kinds) if v == "task")
    assert {i.topic for i in flat if i.kind == "quiz" and i.step_id == "qs1"} == {"quickstart", "llm_architecture"}
    assert plan.left_over > 0
    # deterministic: same inputs, same plan
    assert build_plan(progress_of(), start=START).as_dict() == plan.as_dict()
    json.dumps(plan.as_dict())


@pytest.mark.parametrize("budget", [15, 25, 45, 60, 90, 240, 480])
def test_every_day_stays_within_the_budget_and_split_tasks_add_up(budget: int) -> None:
    plan = build_plan(progress_of(), start=START, budget=budget, due=[30, 0, 2, 0, 0, 9, 0])
    for d in plan.days:
        assert 0 < d.minutes <= budget
        assert all(i.minutes > 0 for i in d.items)
    flat = items(plan)
    assert flat[0].kind == "review" and "30" in flat[0].title
    assert [i.kind for d in plan.days for i in d.items[:1]].count("review") == 3
    # a split task continues where it left off and its parts never exceed its length
    by_task: dict[str, list[int]] = {}
    for i in flat:
        if i.kind == "task":
            by_task.setdefault(i.task_id or "", []).append(i.minutes)
    step_of = {t.id: s for s in load() for t in s.tasks}
    for tid, parts in by_task.items():
        assert sum(parts) <= task_minutes(step_of[tid])
        if len(parts) > 1:
            assert all(p >= MIN_CHUNK for p in parts[:-1])


def test_weak_topics_come_first_with_the_sections_of_missed_questions() -> None:
    bank = default_bank()
    q = bank.topic("rlhf")[2]
    p = progress_of(topics={"rlhf": 0.2, "nlp": 0.45, "quickstart": 0.9})
    plan = build_plan(p, start=START, budget=60, due=[3], missed_refs={"rlhf": [(q.ref_path, q.ref_heading)]})
    assert [t for t, _ in plan.needs_work] == ["rlhf", "nlp"]
    first = plan.days[0].items
    assert [i.kind for i in first[:4]] == ["review", "read", "quiz", "quiz"]
    assert (first[1].note, first[1].heading, first[1].reason) == (q.ref_path, q.ref_heading, "weak")
    assert (first[2].topic, first[3].topic) == ("rlhf", "nlp")
    # a mastered topic is not quizzed again and its note is not re-read in the current step
    flat = items(plan)
    assert not any(i.kind == "quiz" and i.topic == "quickstart" for i in flat)
    assert not any(i.kind == "read" and i.note == "knowledge/quickstart.md" for i in flat)
    text = render_plan(plan)
    assert "待加强 / needs work: 偏好对齐（RLHF / DPO） 20%" in text and "[复习]" in text and "[阅读]" in text


def test_done_tasks_and_finished_steps_are_left_out() -> None:
    steps = load()
    done = {t.id for t in steps[0].tasks} | {"qs2-t1"}
    p = progress_of(done, topics={"quickstart": 0.8, "llm_architecture": 0.7})
    plan = build_plan(p, start=START, budget=120)
    flat = items(plan)
    assert plan.current_step == "qs2"
    assert not any(i.step_id == "qs1" for i in flat)
    assert not any(i.task_id == "qs2-t1" for i in flat)
    assert [i.task_id for i in flat if i.kind == "task" and not i.continued][:2] == ["qs2-t2", "qs2-t3"]
    # everything done: only reviews
    all_done = {t.id for s in steps for t in s.tasks}
    fin = build_plan(progress_of(all_done, topics={t: 0.95 for t in TOPIC_SLUGS}), start=START, due=[0, 4])
    assert fin.current_step is None and [i.kind for i in items(fin)] == ["review"]
    assert "路线已全部完成" in render_plan(fin) and "休息或自由复习" in render_plan(fin)


def test_budget_values_and_due_forecast() -> None:
    assert check_budget(None) == DEFAULT_BUDGET_MIN and check_budget("45") == 45
    for bad in (0, 10, 481, "x", -5):
        with pytest.raises(ValueError, match="每日学习时间") as e:
            check_budget(bad)  # type: ignore[arg-type]
        assert "daily budget" in str(e.value)
    # Asia/Shanghai: 2025-03-03 00:00 local is 2025-03-02 16:00 UTC; overdue cards count on day one
    base = datetime.fromisoformat("2025-03-02T16:00:00+00:00").timestamp()
    due = [base - 86400 * 3, base + 60, base + 86400 + 60, base + 86400 * 6 + 60, base + 86400 * 9]
    assert due_per_day(due, START, "Asia/Shanghai") == [2, 1, 0, 0, 0, 0, 1]
    days, left = pack([], START, 30, [0] * 7)
    assert left == 0 and all(d.items == [] for d in days)


async def test_plan_from_the_store_with_quiz_history_and_saved_budget(app: App, clock: Clock) -> None:  # noqa: F811
    svc = await quiz_service(app, clock)
    missed = await answer_session(svc, clock, U, "rlhf", 2, right=False)
    ps = await ProgressStore.for_app(app)
    plan = await plan_for(ps, U, clock.now)
    assert plan.start == date(2025, 3, 3) and plan.needs_work[0][0] == "rlhf"
    first = plan.days[0].items
    assert first[0].kind == "review" and "2" in first[0].title  # the two missed cards fall due today
    refs = {(default_bank().get(q).ref_path, default_bank().get(q).ref_heading) for q in missed}  # type: ignore[union-attr]
    weak_reads = [(i.note, i.heading) for i in first if i.kind == "read" and i.reason == "weak"]
    assert weak_reads and set(weak_reads) <= refs
    assert (await plan_for(ps, U, clock.now)).as_dict() == plan.as_dict()  # deterministic

    out = io.StringIO()
    assert await plan_command(app, U, out, json_out=True, budget=30, now=clock.now) == 0
    doc = json.loads(out.getvalue())
    assert doc["budget_min"] == 30 and len(doc["days"]) == 7 and all(d["minutes"] <= 30 for d in doc["days"])
    assert (await ps.prefs(U) or {})["budget_min"] == 30  # kept for the next plan and the reminder
    assert (await plan_for(ps, U, clock.now)).budget_min == 30
    text = await plan_text(app, U, now=clock.now)
    assert text.startswith("📅 7 天学习计划") and "每天约 30 分钟" in text and "03-03 周一" in text
    err = io.StringIO()
    assert await plan_command(app, U, io.StringIO(), budget=5, err=err, now=clock.now) == 2
    assert "每日学习时间" in err.getvalue()
