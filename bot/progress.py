"""Where each learner stands on the roadmap: task marks, mastery per topic, position, server view.

Mastery of a topic at `now` (0..1) blends two signals from the user's quiz history, both shrunk
toward 0 by a prior of a few "unanswered" pseudo-items so one lucky answer is not mastery:

    A  = Σ dᵢ·cᵢ / (Σ dᵢ + ACC_PRIOR)          recent accuracy: cᵢ ∈ {0, 1} for each answer i,
         dᵢ = 0.5 ** (ageᵢ / HALF_LIFE)       older answers count less (half-life 30 days)
    M  = Σ_q known_q · R_q(now) / (n + MEM_PRIOR)   memory: over the n distinct questions answered,
         known_q = 1 when the last answer to q was right, R_q = FSRS retrievability of q's card
    mastery = W_ACC · A + (1 − W_ACC) · M      (W_ACC = 0.5)

R_q comes from the stored FSRS card (bot.quiz: cards exist from a question's first miss on);
a question only ever answered right has no stored card, so its card is replayed from its
answers with the same ratings the quiz uses (`rating_for`). Both terms rise with a right
answer, fall with a wrong one, and fall as time passes (R decays, weights age): three right
answers in a row give 3/5 = 0.6 at once, and that fades over the following weeks.

A topic with no answers is `unknown` with mastery 0. `attained` is the same formula evaluated
at the topic's last answer: what the learner showed, without forgetting. The path position uses
it (a step is complete when all its tasks are marked done and the mean attained mastery of its
quiz topics reaches MASTERY_THRESHOLD), so the position does not slide back while the learner
is away; the plan uses the decaying `mastery` to schedule refreshers.

Tables (migration 5): `roadmap_tasks` (task marks per user) and `study_prefs` (reminder time,
zone, daily budget), used by bot.plan and bot.reminders.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Float, Index, Integer, String, Table, and_, delete, select, union
from sqlalchemy.exc import IntegrityError

from bot.quiz.srs import SRS, Card, from_ts, rating_for, utc
from bot.quiz.store import quiz_answers, quiz_cards, quiz_sessions
from bot.roadmap import TOPIC_SLUGS, Step
from bot.roadmap import load as load_roadmap
from bot.store import Store, metadata, register_migration

if TYPE_CHECKING:
    from bot.app import App

PROGRESS_VERSION = 5
NO_GUILD = ""

HALF_LIFE = timedelta(days=30)
ACC_PRIOR = 2.0  # pseudo-answers at 0
MEM_PRIOR = 2.0  # pseudo-questions at 0
W_ACC = 0.5
MASTERY_THRESHOLD = 0.6
WEAK_BELOW = 0.3

roadmap_tasks = Table(
    "roadmap_tasks", metadata,
    Column("user_id", String(64), primary_key=True),
    Column("task_id", String(64), primary_key=True),
    Column("step_id", String(64), nullable=False),
    Column("guild_id", String(64), nullable=False, default=NO_GUILD),  # where it was marked (server view)
    Column("done_at", Float, nullable=False),
    Index("ix_roadmap_tasks_guild", "guild_id"),
)
study_prefs = Table(
    "study_prefs", metadata,
    Column("user_id", String(64), primary_key=True),
    Column("remind_at", String(5)),  # HH:MM local; None: never set
    Column("tz", String(64)),  # None: STUDYBOT_TZ
    Column("remind_enabled", Integer, nullable=False, default=0),  # opt-in
    Column("remind_since", Float),  # when it was turned on or moved: earlier slots never fire
    Column("budget_min", Integer),  # daily study minutes for /plan; None: the default
    Column("channel_id", String(64)),  # where to remind (None: a direct message)
    Column("guild_id", String(64)),
    Column("updated_at", Float, nullable=False),
)
register_migration(PROGRESS_VERSION, (roadmap_tasks, study_prefs))


class ProgressError(ValueError):
    """A user-facing problem (unknown task, bad value), in Chinese and English."""


# ---- pure: mastery ----------------------------------------------------------------------------------

class AnswerRow(NamedTuple):
    question_id: str
    topic: str
    correct: bool
    at: float  # UTC timestamp
    elapsed_s: float | None = None
    time_limit_s: float = 30.0


@dataclass(slots=True)
class TopicMastery:
    topic: str
    mastery: float = 0.0  # now, with forgetting
    attained: float = 0.0  # at the last answer (no forgetting): the path position uses it
    accuracy: float = 0.0  # plain correct / answered
    answered: int = 0
    correct: int = 0
    questions: int = 0  # distinct questions answered
    known: int = 0  # distinct questions whose last answer was right
    retrievability: float | None = None  # mean FSRS retrievability of the topic's cards now
    last_at: float | None = None
    missed: list[str] = field(default_factory=list)  # question ids whose last answer was wrong

    @property
    def status(self) -> str:
        if self.answered == 0:
            return "unknown"
        if self.mastery >= MASTERY_THRESHOLD:
            return "mastered"
        return "learning" if self.mastery >= WEAK_BELOW else "weak"

    def as_dict(self) -> dict[str, Any]:
        r = self.retrievability
        return {"mastery": round(self.mastery, 3), "attained": round(self.attained, 3),
                "accuracy": round(self.accuracy, 3), "answered": self.answered, "correct": self.correct,
                "questions": self.questions, "retrievability": None if r is None else round(r, 3),
                "status": self.status}


_exact = SRS(fuzz=False)  # replays are deterministic; fuzz only moves due dates, not retrievability


def _replayed(user: str, qid: str, answers: Sequence[AnswerRow]) -> Card:
    card = _exact.new_card(user, qid, from_ts(answers[0].at))
    for a in answers:
        card = _exact.review(card, rating_for(a.correct, a.elapsed_s, a.time_limit_s), from_ts(a.at)).card
    return card


def _score(answers: Sequence[AnswerRow], by_q: Mapping[str, Sequence[AnswerRow]], r: Mapping[str, float],
           at: float) -> float:
    half = HALF_LIFE.total_seconds()
    w = [0.5 ** (max(0.0, at - a.at) / half) for a in answers]
    acc = sum(wi for wi, a in zip(w, answers, strict=True) if a.correct) / (sum(w) + ACC_PRIOR)
    mem = sum(r[q] for q, rows in by_q.items() if rows[-1].correct) / (len(by_q) + MEM_PRIOR)
    return min(1.0, max(0.0, W_ACC * acc + (1 - W_ACC) * mem))


def topic_mastery(user: str, answers: Iterable[AnswerRow], cards: Mapping[str, Card], now: datetime,
                  srs: SRS | None = None, topics: Iterable[str] = TOPIC_SLUGS) -> dict[str, TopicMastery]:
    """Mastery per topic for one user as of `now` (answers after `now` are ignored). Pure."""
    srs = srs or _exact
    t_now = utc(now).timestamp()
    by_topic: dict[str, list[AnswerRow]] = defaultdict(list)
    for a in sorted(answers, key=lambda a: a.at):
        if a.at <= t_now:
            by_topic[a.topic].append(a)
    out = {t: TopicMastery(t) for t in topics}
    for topic, rows in by_topic.items():
        by_q: dict[str, list[AnswerRow]] = defaultdict(list)
        for a in rows:
            by_q[a.question_id].append(a)
        last_at = rows[-1].at
        r_now: dict[str, float] = {}
        r_last: dict[str, float] = {}
        for qid, qrows in by_q.items():
            card = cards.get(qid)
            if card is None or card.last_review is None or card.last_review.timestamp() > t_now:
                card = _replayed(user, qid, qrows)  # no stored card, or one newer than `now`
            r_now[qid] = srs.retrievability(card, utc(now))
            r_last[qid] = srs.retrievability(card, from_ts(last_at))
        tm = out.setdefault(topic, TopicMastery(topic))
        tm.answered, tm.correct = len(rows), sum(a.correct for a in rows)
        tm.accuracy = tm.correct / tm.answered
        tm.questions = len(by_q)
        tm.known = sum(1 for q in by_q.values() if q[-1].correct)
        tm.missed = sorted(q for q, qrows in by_q.items() if not qrows[-1].correct)
        tm.retrievability = sum(r_now.values()) / len(r_now)
        tm.last_at = last_at
        tm.mastery = _score(rows, by_q, r_now, t_now)
        tm.attained = _score(rows, by_q, r_last, last_at)
    return out


# ---- pure: the position on the path -------------------------------------------------------------------

@dataclass(slots=True)
class StepProgress:
    number: int  # 1-based, as in `/roadmap step N`
    step: Step
    done_tasks: list[str]
    mastery: float  # mean attained mastery of the step's quiz topics
    complete: bool
    state: str = "todo"  # done | current | todo

    @property
    def tasks_total(self) -> int:
        return len(self.step.tasks)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.step.id, "number": self.number, "done_tasks": self.done_tasks,
                "tasks_total": self.tasks_total, "mastery": round(self.mastery, 3), "complete": self.complete,
                "state": self.state}


def path_position(steps: Sequence[Step], done: Iterable[str], mastery: Mapping[str, TopicMastery],
                  threshold: float = MASTERY_THRESHOLD) -> list[StepProgress]:
    """Each step's progress; the first incomplete step is `current`. Pure."""
    done_set = set(done)
    out: list[StepProgress] = []
    current_seen = False
    for i, s in enumerate(steps, 1):
        marks = [t.id for t in s.tasks if t.id in done_set]
        topics = s.quiz_topics or []
        m = sum(mastery[t].attained if t in mastery else 0.0 for t in topics) / len(topics) if topics else 1.0
        complete = len(marks) == len(s.tasks) and m >= threshold
        state = "done" if complete else ("todo" if current_seen else "current")
        current_seen = current_seen or not complete
        out.append(StepProgress(i, s, marks, m, complete, state))
    return out


def find_task(task_id: str, steps: Sequence[Step] | None = None) -> tuple[Step, Any]:
    steps = steps if steps is not None else load_roadmap()
    key = task_id.strip()
    for s in steps:
        for t in s.tasks:
            if t.id == key:
                return s, t
    raise ProgressError(f"没有这个任务 / no such task: {task_id!r}（例如 / e.g. qs1-t1；"
                        f"用 studybot roadmap --step N 查看任务编号 / see task ids with --step N）")


@dataclass(slots=True)
class UserProgress:
    user_id: str
    now: datetime
    topics: dict[str, TopicMastery]
    steps: list[StepProgress]
    done_tasks: set[str]
    tz: str

    @property
    def current(self) -> StepProgress | None:
        return next((s for s in self.steps if s.state == "current"), None)

    @property
    def completed(self) -> int:
        return sum(1 for s in self.steps if s.complete)

    def needs_work(self, threshold: float = MASTERY_THRESHOLD) -> list[TopicMastery]:
        """Topics the user has quizzed on but not (or no longer) mastered, weakest first."""
        order = {t: i for i, t in enumerate(TOPIC_SLUGS)}
        rows = [m for m in self.topics.values() if m.answered and m.mastery < threshold]
        return sorted(rows, key=lambda m: (m.mastery, order.get(m.topic, 99), m.topic))

    def as_dict(self) -> dict[str, Any]:
        cur = self.current
        return {"user": self.user_id, "as_of": utc(self.now).isoformat(), "tz": self.tz,
                "current_step": cur.step.id if cur else None, "current_number": cur.number if cur else None,
                "completed_steps": self.completed, "total_steps": len(self.steps),
                "mastery_threshold": MASTERY_THRESHOLD,
                "topics": {t: m.as_dict() for t, m in self.topics.items()}}


# ---- the store side ------------------------------------------------------------------------------------

class ProgressStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    @classmethod
    async def attach(cls, store: Store) -> ProgressStore:
        """Make sure migrations 3 (quiz) and 5 are applied (the store may predate this import)."""
        await store.migrate()
        return cls(store)

    @classmethod
    async def for_app(cls, app: App) -> ProgressStore:
        return await cls.attach(await app.store())

    # -- task marks --------------------------------------------------------------------------------

    async def mark(self, user: str, task_id: str, now: datetime, guild: str | None = None) -> bool:
        """Mark a roadmap task done; False when it already was. ProgressError for an unknown id."""
        step, task = find_task(task_id)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(roadmap_tasks.insert().values(
                    user_id=user, task_id=task.id, step_id=step.id, guild_id=guild or NO_GUILD,
                    done_at=utc(now).timestamp()))
            return True
        except IntegrityError:
            return False

    async def unmark(self, user: str, task_id: str) -> bool:
        _, task = find_task(task_id)
        async with self.engine.begin() as conn:
            res = await conn.execute(delete(roadmap_tasks).where(and_(
                roadmap_tasks.c.user_id == user, roadmap_tasks.c.task_id == task.id)))
            return res.rowcount == 1

    async def done_tasks(self, user: str) -> dict[str, float]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(roadmap_tasks.c.task_id, roadmap_tasks.c.done_at).where(
                roadmap_tasks.c.user_id == user))).all()
        return {r[0]: float(r[1]) for r in rows}

    # -- quiz history ----------------------------------------------------------------------------------

    async def answers(self, users: Sequence[str]) -> dict[str, list[AnswerRow]]:
        q = (select(quiz_answers.c.user_id, quiz_answers.c.question_id, quiz_answers.c.topic,
                    quiz_answers.c.correct, quiz_answers.c.answered_at, quiz_answers.c.elapsed_s,
                    quiz_sessions.c.time_limit_s)
             .select_from(quiz_answers.join(quiz_sessions, quiz_sessions.c.id == quiz_answers.c.session_id))
             .where(quiz_answers.c.user_id.in_(list(users)))
             .order_by(quiz_answers.c.answered_at, quiz_answers.c.id))
        out: dict[str, list[AnswerRow]] = {u: [] for u in users}
        async with self.engine.connect() as conn:
            for r in (await conn.execute(q)).all():
                out[r[0]].append(AnswerRow(r[1], r[2], bool(r[3]), float(r[4]), r[5], float(r[6] or 30.0)))
        return out

    async def cards(self, users: Sequence[str]) -> dict[str, dict[str, Card]]:
        out: dict[str, dict[str, Card]] = {u: {} for u in users}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(quiz_cards.c.user_id, quiz_cards.c.question_id, quiz_cards.c.card)
                                       .where(quiz_cards.c.user_id.in_(list(users))))).all()
        for u, qid, text in rows:
            out[u][qid] = SRS.loads(text)
        return out

    async def due_dates(self, user: str) -> list[float]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(quiz_cards.c.due).where(quiz_cards.c.user_id == user))).all()
        return sorted(float(r[0]) for r in rows)

    async def activity(self, *, user: str | None = None, guild: str | None = None,
                       since: float | None = None) -> list[tuple[float, bool]]:
        """(answered_at, correct) of a user's answers (any server) or of a server's answers."""
        cond = []
        if user is not None:
            cond.append(quiz_answers.c.user_id == user)
        if guild is not None:
            cond.append(quiz_answers.c.guild_id == guild)
        if since is not None:
            cond.append(quiz_answers.c.answered_at >= since)
        q = select(quiz_answers.c.answered_at, quiz_answers.c.correct).order_by(quiz_answers.c.answered_at)
        if cond:
            q = q.where(and_(*cond))
        async with self.engine.connect() as conn:
            return [(float(r[0]), bool(r[1])) for r in (await conn.execute(q)).all()]

    async def members(self, guild: str) -> list[str]:
        """Users active in a server: quiz answers there, tasks marked there, reminders set there."""
        q = union(select(quiz_answers.c.user_id).where(quiz_answers.c.guild_id == guild),
                  select(roadmap_tasks.c.user_id).where(roadmap_tasks.c.guild_id == guild),
                  select(study_prefs.c.user_id).where(study_prefs.c.guild_id == guild))
        async with self.engine.connect() as conn:
            return sorted({r[0] for r in (await conn.execute(q)).all()})

    # -- preferences (reminder, daily budget) ----------------------------------------------------------

    async def prefs(self, user: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(study_prefs).where(study_prefs.c.user_id == user))).mappings().first()
        return dict(row) if row else None

    async def all_prefs(self, *, reminders_only: bool = False) -> list[dict[str, Any]]:
        q = select(study_prefs).order_by(study_prefs.c.user_id)
        if reminders_only:
            q = q.where(and_(study_prefs.c.remind_enabled == 1, study_prefs.c.remind_at.is_not(None)))
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def set_prefs(self, user: str, now: datetime, **values: Any) -> None:
        allowed = {"remind_at", "tz", "remind_enabled", "remind_since", "budget_min", "channel_id", "guild_id"}
        bad = set(values) - allowed
        if bad:
            raise TypeError(f"unknown preference(s): {sorted(bad)}")
        ts = utc(now).timestamp()
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as ins
            else:
                from sqlalchemy.dialects.sqlite import insert as ins
            await conn.execute(ins(study_prefs).values(user_id=user, updated_at=ts, **values)
                               .on_conflict_do_update(index_elements=["user_id"], set_={**values, "updated_at": ts}))


# ---- assembling a user's and a server's progress ----------------------------------------------------------

def user_zone(prefs: Mapping[str, Any] | None, default: str) -> str:
    return str(prefs["tz"]) if prefs and prefs.get("tz") else default


async def user_progress(ps: ProgressStore, user: str, now: datetime, *, tz: str = "Asia/Shanghai",
                        steps: Sequence[Step] | None = None) -> UserProgress:
    steps = steps if steps is not None else load_roadmap()
    answers = (await ps.answers([user]))[user]
    cards = (await ps.cards([user]))[user]
    topics = topic_mastery(user, answers, cards, now)
    done = await ps.done_tasks(user)
    zone = user_zone(await ps.prefs(user), tz)
    return UserProgress(user, now, topics, path_position(steps, done, topics), set(done), zone)


@dataclass(slots=True)
class ServerProgress:
    guild_id: str
    now: datetime
    members: list[str]
    topics: dict[str, tuple[float, int]]  # topic → (mean mastery over members with answers, how many)
    at_step: dict[str, int]  # step id → members whose current step it is
    finished: int  # members who completed every step
    users: list[UserProgress]

    def as_dict(self) -> dict[str, Any]:
        return {"guild": self.guild_id, "as_of": utc(self.now).isoformat(), "members": len(self.members),
                "topics": {t: {"mastery": round(m, 3), "learners": n} for t, (m, n) in self.topics.items()},
                "at_step": self.at_step, "finished": self.finished}


async def server_progress(ps: ProgressStore, guild: str, now: datetime, *, tz: str = "Asia/Shanghai",
                          steps: Sequence[Step] | None = None) -> ServerProgress:
    steps = steps if steps is not None else load_roadmap()
    members = await ps.members(guild)
    answers = await ps.answers(members)
    cards = await ps.cards(members)
    users: list[UserProgress] = []
    for u in members:
        topics = topic_mastery(u, answers[u], cards[u], now)
        done = await ps.done_tasks(u)
        users.append(UserProgress(u, now, topics, path_position(steps, done, topics), set(done), tz))
    agg: dict[str, tuple[float, int]] = {}
    for t in TOPIC_SLUGS:
        vals = [up.topics[t].mastery for up in users if up.topics[t].answered]
        agg[t] = (sum(vals) / len(vals) if vals else 0.0, len(vals))
    at_step: dict[str, int] = {}
    finished = 0
    for up in users:
        cur = up.current
        if cur is None:
            finished += 1
        else:
            at_step[cur.step.id] = at_step.get(cur.step.id, 0) + 1
    return ServerProgress(guild, now, members, agg, at_step, finished, users)


def local_days(end: datetime, days: int, tz: str) -> list[date]:
    """The `days` local dates ending with `end`'s date."""
    last = utc(end).astimezone(ZoneInfo(tz)).date()
    return [last - timedelta(days=days - 1 - i) for i in range(days)]


def per_day(events: Iterable[tuple[float, bool]], days: Sequence[date], tz: str) -> tuple[list[int], list[int]]:
    """(right answers per day, wrong answers per day) over `days` in zone `tz`."""
    zone = ZoneInfo(tz)
    index = {d: i for i, d in enumerate(days)}
    right, wrong = [0] * len(days), [0] * len(days)
    for ts, ok in events:
        i = index.get(datetime.fromtimestamp(ts, zone).date())
        if i is not None:
            (right if ok else wrong)[i] += 1
    return right, wrong
