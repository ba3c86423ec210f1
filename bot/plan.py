"""A personal study plan for the coming 7 days, from the roadmap, the user's progress and weak topics.

`build_plan` is pure and deterministic: the same roadmap, progress, due-card forecast and budget
give the same plan. Work is queued in this order and packed day by day into the daily budget
(minutes), each day opening with that day's due FSRS reviews:

1. topics that need work (quizzed, mastery below the threshold; weakest first, at most 3): re-read
   the note sections of the questions last answered wrong, then a short quiz on the topic;
2. from the current step on, each incomplete step: read its notes section by section (when its
   topics are not yet mastered; a share of the step's estimated hours), do its open tasks, then
   quiz its topics that are not mastered.

A task longer than what is left of a day is split (at least MIN_CHUNK minutes a part, the rest
continues the next day); reading and quizzes are not split. What does not fit in the week is
counted in `left_over`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from bot.quiz.bank import Bank, default_bank
from bot.quiz.srs import utc
from bot.roadmap import TOPIC_SLUGS, Step
from bot.roadmap import load as load_roadmap

from .progress import MASTERY_THRESHOLD, ProgressStore, UserProgress, user_progress

DAYS = 7
DEFAULT_BUDGET_MIN = 60
MIN_BUDGET_MIN, MAX_BUDGET_MIN = 15, 480
READ_MIN = 15  # one note section
QUIZ_MIN = 10  # five questions
REVIEW_MIN_PER_CARD = 2
REVIEW_MIN, REVIEW_CAP = 5, 20
MIN_CHUNK = 15
TASK_SHARE, READ_SHARE = 0.6, 0.3  # of a step's estimated hours
TASK_MIN, TASK_MAX = 20, 120
MAX_WEAK_TOPICS = 3
MAX_WEAK_READS = 2
WEEKDAYS = "一二三四五六日"
KIND_NAMES = {"review": "复习", "read": "阅读", "task": "任务", "quiz": "测验"}

_HEADING = re.compile(r"^##\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@lru_cache(maxsize=64)
def note_sections(path: str) -> tuple[str, ...]:
    """The level-2 headings of a built-in note (prompts/<path>), in order, outside code fences."""
    node = resources.files("prompts")
    for part in path.split("/"):
        node = node / part
    if not node.is_file():
        return ()
    out: list[str] = []
    fenced = False
    for line in node.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := _HEADING.match(line)):
            out.append(m.group(1))
    return tuple(out)


def topic_titles(steps: Sequence[Step] | None = None) -> dict[str, str]:
    """Topic slug → its Chinese name (the topic step's title; quickstart → 快速入门)."""
    steps = steps if steps is not None else load_roadmap()
    names = {s.id: s.title for s in steps if s.id in TOPIC_SLUGS}
    names["quickstart"] = "快速入门"
    return {t: names.get(t, t) for t in TOPIC_SLUGS}


@dataclass(slots=True)
class PlanItem:
    kind: str  # review | read | task | quiz
    title: str
    minutes: int
    command: str = ""
    reason: str = "step"  # step | weak | due
    step_id: str | None = None
    topic: str | None = None
    task_id: str | None = None
    note: str | None = None
    heading: str | None = None
    detail: str = ""  # a task's expected output (JSON; the text shows the title only)
    continued: bool = False  # the rest of a task split over days
    splittable: bool = False

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("splittable")
        return d


@dataclass(slots=True)
class DayPlan:
    day: date
    items: list[PlanItem] = field(default_factory=list)

    @property
    def minutes(self) -> int:
        return sum(i.minutes for i in self.items)

    def as_dict(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "minutes": self.minutes, "items": [i.as_dict() for i in self.items]}


@dataclass(slots=True)
class Plan:
    user_id: str
    start: date
    budget_min: int
    days: list[DayPlan]
    current_step: str | None
    current_number: int | None
    needs_work: list[tuple[str, float]]  # (topic, mastery)
    left_over: int  # queued items that did not fit in the week

    def as_dict(self) -> dict[str, Any]:
        return {"user": self.user_id, "start": self.start.isoformat(), "days_count": len(self.days),
                "budget_min": self.budget_min, "current_step": self.current_step,
                "needs_work": [{"topic": t, "mastery": round(m, 3)} for t, m in self.needs_work],
                "left_over": self.left_over, "days": [d.as_dict() for d in self.days]}


def check_budget(minutes: int | str | None) -> int:
    if minutes is None or minutes == "":
        return DEFAULT_BUDGET_MIN
    try:
        value = int(minutes)
    except (TypeError, ValueError):
        value = -1
    if not MIN_BUDGET_MIN <= value <= MAX_BUDGET_MIN:
        raise ValueError(f"每日学习时间须为 {MIN_BUDGET_MIN}-{MAX_BUDGET_MIN} 分钟 / daily budget must be "
                         f"{MIN_BUDGET_MIN}-{MAX_BUDGET_MIN} minutes, got {minutes!r}")
    return value


def _round5(x: float) -> int:
    return int(5 * round(x / 5))


def task_minutes(step: Step) -> int:
    per = (step.est_hours or 2) * 60 * TASK_SHARE / max(1, len(step.tasks))
    return max(TASK_MIN, min(TASK_MAX, _round5(per)))


def review_minutes(cards: int) -> int:
    return min(REVIEW_CAP, max(REVIEW_MIN, cards * REVIEW_MIN_PER_CARD))


def due_per_day(due: Iterable[float], start: date, tz: str, days: int = DAYS) -> list[int]:
    """Cards falling due on each local day from `start` (overdue ones count on the first day)."""
    zone = ZoneInfo(tz)
    out = [0] * days
    for ts in due:
        i = (datetime.fromtimestamp(ts, zone).date() - start).days
        if i < days:
            out[max(0, i)] += 1
    return out


def _read(note: str, heading: str, step_id: str | None, topic: str | None, reason: str) -> PlanItem:
    return PlanItem("read", f"阅读 {note} § {heading}", READ_MIN, f'studybot kb search "{heading}"', reason,
                    step_id=step_id, topic=topic, note=note, heading=heading)


def _quiz(topic: str, names: Mapping[str, str], step_id: str | None, reason: str) -> PlanItem:
    return PlanItem("quiz", f"测验 {names.get(topic, topic)}（{topic}）5 题", QUIZ_MIN,
                    f"studybot quiz --topic {topic}", reason, step_id=step_id, topic=topic)


def work_queue(progress: UserProgress, missed_refs: Mapping[str, Sequence[tuple[str, str]]],
               threshold: float = MASTERY_THRESHOLD) -> list[PlanItem]:
    """Everything the learner should do next, in order (see the module docstring)."""
    names = topic_titles([sp.step for sp in progress.steps])
    queue: list[PlanItem] = []
    read_seen: set[tuple[str, str]] = set()
    quizzed: set[str] = set()
    for tm in progress.needs_work(threshold)[:MAX_WEAK_TOPICS]:
        for note, heading in list(dict.fromkeys(missed_refs.get(tm.topic, ())))[:MAX_WEAK_READS]:
            read_seen.add((note, heading))
            queue.append(_read(note, heading, None, tm.topic, "weak"))
        quizzed.add(tm.topic)
        queue.append(_quiz(tm.topic, names, None, "weak"))
    for sp in progress.steps:
        if sp.state == "done":
            continue
        s = sp.step
        if sp.mastery < threshold:
            cap = max(2, round((s.est_hours or 2) * 60 * READ_SHARE / READ_MIN))
            reads = 0
            for note in s.notes:
                stem = note.rsplit("/", 1)[-1].removesuffix(".md")
                tm = progress.topics.get(stem)
                if tm is not None and tm.mastery >= threshold:
                    continue  # a note on a topic the learner masters
                for heading in note_sections(note):
                    if reads >= cap:
                        break
                    if (note, heading) in read_seen:
                        continue
                    read_seen.add((note, heading))
                    queue.append(_read(note, heading, s.id, stem, "step"))
                    reads += 1
        minutes = task_minutes(s)
        for t in s.tasks:
            if t.id in sp.done_tasks:
                continue
            cmd = t.commands[0] if t.commands else (s.commands[0] if s.commands else "")
            queue.append(PlanItem("task", f"任务 {t.id}：{t.title}", minutes, cmd, "step", step_id=s.id,
                                  task_id=t.id, detail=f"产出 / output: {t.output}", splittable=True))
        for topic in s.quiz_topics:
            tm = progress.topics.get(topic)
            if topic in quizzed or (tm is not None and tm.mastery >= threshold):
                continue
            quizzed.add(topic)
            queue.append(_quiz(topic, names, s.id, "step"))
    return queue


def pack(queue: Sequence[PlanItem], start: date, budget: int, due: Sequence[int],
         days: int = DAYS) -> tuple[list[DayPlan], int]:
    """Fill the days in order; returns (days, items left over)."""
    pending = list(queue)
    out: list[DayPlan] = []
    for d in range(days):
        day = DayPlan(start + timedelta(days=d))
        n = due[d] if d < len(due) else 0
        if n:
            day.items.append(PlanItem("review", f"复习到期卡片 {n} 张 / review {n} due cards",
                                      min(budget, review_minutes(n)), "studybot quiz review", "due"))
        left = budget - day.minutes
        while pending:
            item = pending[0]
            if item.minutes <= left:
                day.items.append(pending.pop(0))
                left -= item.minutes
            elif item.splittable and left >= MIN_CHUNK:
                part = PlanItem(**{**asdict(item), "minutes": left})
                day.items.append(part)
                pending[0] = PlanItem(**{**asdict(item), "minutes": item.minutes - left, "continued": True})
                left = 0
            else:
                break
        out.append(day)
    return out, len(pending)


def build_plan(progress: UserProgress, *, start: date, budget: int = DEFAULT_BUDGET_MIN,
               due: Sequence[int] = (), missed_refs: Mapping[str, Sequence[tuple[str, str]]] | None = None,
               threshold: float = MASTERY_THRESHOLD) -> Plan:
    """The week's plan. Pure and deterministic."""
    budget = check_budget(budget)
    queue = work_queue(progress, missed_refs or {}, threshold)
    days, left = pack(queue, start, budget, due)
    cur = progress.current
    return Plan(progress.user_id, start, budget, days, cur.step.id if cur else None, cur.number if cur else None,
                [(m.topic, m.mastery) for m in progress.needs_work(threshold)], left)


def missed_refs_of(progress: UserProgress, bank: Bank) -> dict[str, list[tuple[str, str]]]:
    """Topic → the (note, heading) references of the questions last answered wrong."""
    out: dict[str, list[tuple[str, str]]] = {}
    for topic, tm in progress.topics.items():
        refs = [(q.ref_path, q.ref_heading) for qid in tm.missed if (q := bank.get(qid)) is not None]
        if refs:
            out[topic] = list(dict.fromkeys(refs))
    return out


async def plan_for(ps: ProgressStore, user: str, now: datetime, *, tz: str = "Asia/Shanghai",
                   budget: int | None = None, bank: Bank | None = None) -> Plan:
    """Gather the inputs from the store and build the plan starting today (the user's local date)."""
    progress = await user_progress(ps, user, now, tz=tz)
    prefs = await ps.prefs(user) or {}
    chosen = budget if budget is not None else (prefs.get("budget_min") or DEFAULT_BUDGET_MIN)
    start = utc(now).astimezone(ZoneInfo(progress.tz)).date()
    due = due_per_day(await ps.due_dates(user), start, progress.tz)
    refs = missed_refs_of(progress, bank or default_bank())
    return build_plan(progress, start=start, budget=chosen, due=due, missed_refs=refs)


def render_day(d: DayPlan) -> list[str]:
    lines = [f"{d.day.strftime('%m-%d')} 周{WEEKDAYS[d.day.weekday()]}（{d.minutes} 分钟）"]
    if not d.items:
        lines.append("  · 休息或自由复习 / rest or free review")
    for it in d.items:
        more = "（续）" if it.continued else ""
        cmd = f"  → {it.command}" if it.command else ""
        lines.append(f"  · [{KIND_NAMES[it.kind]}] {it.title}{more}（{it.minutes} 分钟）{cmd}")
    return lines


def render_plan(plan: Plan) -> str:
    names = topic_titles()
    lines = [f"📅 7 天学习计划 / 7-day study plan · {plan.start.isoformat()} 起 · 每天约 {plan.budget_min} 分钟"]
    if plan.current_step:
        title = next((s.title for s in load_roadmap() if s.id == plan.current_step), plan.current_step)
        lines.append(f"当前步骤 / current step: {plan.current_number}. {title}（{plan.current_step}）")
    else:
        lines.append("路线已全部完成，本周以复习为主 / roadmap complete: this week is for review")
    if plan.needs_work:
        weak = "，".join(f"{names.get(t, t)} {m:.0%}" for t, m in plan.needs_work[:MAX_WEAK_TOPICS])
        lines.append(f"待加强 / needs work: {weak}")
    for d in plan.days:
        lines.append("")
        lines += render_day(d)
    if plan.left_over:
        lines.append(f"\n还有 {plan.left_over} 项安排在下周 / {plan.left_over} more items next week")
    return "\n".join(lines)
