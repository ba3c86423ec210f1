"""Quiz sessions, independent of any adapter: start, show the next question, answer, finish.

All state lives in the store, so a session survives a restart (`QuizService.resume`) and the
database's unique key makes each user's answer to a question count once. Time is injected.
"""

from __future__ import annotations

import logging
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .bank import TOPICS, Bank, BankError, Question, check_generated, default_bank
from .srs import SRS, UTC, from_ts, local_day, nudge_due, parse_hhmm, utc
from .store import NO_GUILD, AnswerIn, AnswerRejected, QuizStore, live_streak

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
DEFAULT_COUNT = 5
MAX_COUNT = 50
DEFAULT_TIME_LIMIT_S = 30.0
BASE_POINTS = 100
SPEED_BONUS_MAX = 50  # full bonus for an instant answer, none at the time limit
DEFAULT_NUDGE_TIME = "20:00"


# Discord custom_ids (adapters build persistent buttons from these; 100 characters at most)
ANSWER_ID_RE = re.compile(r"^quiz:(?P<session>[0-9a-f]{32}):(?P<question>[A-Za-z0-9_.-]{1,48}):(?P<choice>[0-3])$")
REVIEW_ID_RE = re.compile(r"^quiz:review:(?P<user>[A-Za-z0-9_:.-]{1,80})$")


def answer_custom_id(session_id: str, question_id: str, choice: int) -> str:
    return f"quiz:{session_id}:{question_id}:{choice}"


def review_custom_id(user_id: str) -> str:
    return f"quiz:review:{user_id}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def points_for(correct: bool, elapsed_s: float | None, limit_s: float) -> int:
    if not correct:
        return 0
    if elapsed_s is None or limit_s <= 0:
        return BASE_POINTS
    share = max(0.0, 1.0 - elapsed_s / limit_s)
    return BASE_POINTS + round(SPEED_BONUS_MAX * share)


class QuizError(ValueError):
    """A user-facing problem (unknown topic, bad count, no such session), in Chinese and English."""


@dataclass(slots=True)
class QuestionView:
    session_id: str
    index: int  # 0-based
    total: int
    question: Question
    shown_at: datetime
    time_limit_s: float
    mode: str


@dataclass(slots=True)
class Feedback:
    question_id: str
    accepted: bool  # False: duplicate, closed (an earlier question's button) or finished
    reason: str  # ok | duplicate | closed | finished | not_started
    choice: int | None
    correct: bool
    answer: int
    answer_text: str
    explanation: str
    ref: dict[str, str]
    points: int
    elapsed_s: float | None = None
    streak: int = 0
    best_streak: int = 0
    rating: str | None = None  # FSRS rating when a card was reviewed
    next_due: datetime | None = None


@dataclass(slots=True)
class UserResult:
    user_id: str
    answered: int
    correct: int
    points: int


@dataclass(slots=True)
class Summary:
    session_id: str
    mode: str
    topic: str | None
    total: int
    user_id: str
    answered: int
    correct: int
    points: int
    missed: list[str]
    streak: int
    due_now: int
    next_due: datetime | None
    users: list[UserResult] = field(default_factory=list)


@dataclass(slots=True)
class UserStats:
    user_id: str
    points: int
    answered: int
    correct: int
    accuracy: float
    sessions: int
    streak: int
    best_streak: int
    cards: int
    due_now: int
    next_due: datetime | None
    topics: dict[str, tuple[int, int]]

    def as_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "points": self.points, "answered": self.answered, "correct": self.correct,
                "accuracy": round(self.accuracy, 3), "sessions": self.sessions, "streak": self.streak,
                "best_streak": self.best_streak, "cards": self.cards, "due_now": self.due_now,
                "next_due": self.next_due.isoformat() if self.next_due else None,
                "topics": {t: {"correct": c, "answered": n} for t, (c, n) in self.topics.items()}}


@dataclass(slots=True)
class Nudge:
    user_id: str
    due: int
    day: str  # the user's local date: the exactly-once key of the delivery
    channel_id: str | None


async def full_bank(qstore: QuizStore, base: Bank | None = None) -> Bank:
    """The built-in bank plus approved generated questions (a broken row is skipped, not fatal)."""
    base = base or default_bank()
    extra: list[Question] = []
    for row in await qstore.drafts("approved"):
        raw = {**row["payload"], "id": row["question_id"], "topic": row["topic"]}
        try:
            q = check_generated(raw, f"store:quiz_generated#{row['id']}")
        except BankError as e:
            log.warning("skipping approved question: %s", e)
            continue
        if q.id not in base:
            extra.append(q)
    return base.with_extra(extra) if extra else base


class QuizService:
    def __init__(self, qstore: QuizStore, bank: Bank, *, srs: SRS | None = None, clock: Clock = utc_now,
                 rng: random.Random | None = None, tz: ZoneInfo | str = "Asia/Shanghai",
                 time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> None:
        self.qstore = qstore
        self.bank = bank
        self.srs = srs or SRS()
        self.clock = clock
        self.rng = rng or random.Random()
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.time_limit_s = time_limit_s

    @classmethod
    async def for_app(cls, app: App, *, clock: Clock = utc_now, rng: random.Random | None = None,
                      srs: SRS | None = None) -> QuizService:
        qstore = await QuizStore.attach(await app.store())
        return cls(qstore, await full_bank(qstore), srs=srs, clock=clock, rng=rng, tz=app.settings.zone)

    async def reload_bank(self) -> Bank:
        """Pick up newly approved generated questions."""
        self.bank = await full_bank(self.qstore)
        return self.bank

    def _now(self, now: datetime | None) -> datetime:
        return utc(now) if now is not None else utc(self.clock())

    # -- sessions -----------------------------------------------------------------------------------

    @staticmethod
    def check_topic(topic: str | None) -> str | None:
        if topic is None or not topic.strip() or topic.strip().lower() in ("all", "mixed", "全部"):
            return None
        slug = topic.strip().lower()
        if slug not in TOPICS:
            raise QuizError(f"未知主题 / unknown topic {topic!r}；可选 / choose one of: {', '.join(TOPICS)}")
        return slug

    async def start(self, user: str, topic: str | None = None, count: int = DEFAULT_COUNT,
                    guild: str | None = None, channel: str | None = None, now: datetime | None = None) -> QuizSession:
        slug = self.check_topic(topic)
        if not 1 <= count <= MAX_COUNT:
            raise QuizError(f"题数须在 1-{MAX_COUNT} 之间 / count must be 1-{MAX_COUNT}, got {count}")
        pool = self.bank.topic(slug) if slug else list(self.bank.questions)
        if not pool:
            raise QuizError(f"主题 {slug} 还没有题目 / no questions for {slug} yet")
        # questions this user has not answered yet come first
        seen = await self.qstore.answered_ids(user)
        fresh = [q for q in pool if q.id not in seen]
        old = [q for q in pool if q.id in seen]
        picked = self.rng.sample(fresh, min(count, len(fresh)))
        if len(picked) < count:
            picked += self.rng.sample(old, min(count - len(picked), len(old)))
        return await self._create(user, slug, "quiz", [q.id for q in picked], guild, channel, now)

    async def start_review(self, user: str, count: int = 10, guild: str | None = None, channel: str | None = None,
                           now: datetime | None = None) -> QuizSession | None:
        """A session of the user's due cards, oldest due first; None when nothing is due."""
        t = self._now(now)
        due = [qid for qid, _ in await self.qstore.due_cards(user, t.timestamp(), limit=max(1, count) * 2)
               if qid in self.bank][:count]
        if not due:
            return None
        return await self._create(user, None, "review", due, guild, channel, t)

    async def _create(self, user: str, topic: str | None, mode: str, ids: list[str], guild: str | None,
                      channel: str | None, now: datetime | None) -> QuizSession:
        sid = uuid.UUID(int=self.rng.getrandbits(128)).hex
        await self.qstore.create_session(sid, user_id=user, guild_id=guild or NO_GUILD, channel_id=channel,
                                         topic=topic, mode=mode, question_ids=ids, time_limit_s=self.time_limit_s,
                                         now=self._now(now).timestamp())
        if channel is not None:
            await self.qstore.set_prefs(user, self._now(now).timestamp(), channel_id=channel)
        return QuizSession(self, sid)

    async def resume(self, session_id: str) -> QuizSession | None:
        return QuizSession(self, session_id) if await self.qstore.session(session_id) else None

    # -- stats and boards -------------------------------------------------------------------------------

    async def stats(self, user: str, now: datetime | None = None) -> UserStats:
        t = self._now(now)
        tot = await self.qstore.totals(user)
        srow = await self.qstore.streak_row(user)
        cards, due, nxt = await self.qstore.card_counts(user, t.timestamp())
        answered = tot["answered"]
        return UserStats(user_id=user, points=tot["points"], answered=answered, correct=tot["correct"],
                         accuracy=(tot["correct"] / answered) if answered else 0.0, sessions=tot["sessions"],
                         streak=live_streak(srow, local_day(t, self.tz)),
                         best_streak=int(srow["best"]) if srow else 0, cards=cards, due_now=due, next_due=nxt,
                         topics=await self.qstore.topic_accuracy(user))

    async def leaderboard(self, guild: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        return await self.qstore.leaderboard(guild, limit)

    async def due(self, user: str, now: datetime | None = None, limit: int = 20) -> list[tuple[Question, datetime]]:
        rows = await self.qstore.due_cards(user, self._now(now).timestamp(), limit)
        return [(q, d) for qid, d in rows if (q := self.bank.get(qid)) is not None]

    # -- the daily review nudge -----------------------------------------------------------------------

    async def nudges(self, now: datetime | None = None, default_time: str = DEFAULT_NUDGE_TIME) -> list[Nudge]:
        """Users with due cards whose nudge time has come today and who were not nudged since."""
        t = self._now(now)
        prefs = await self.qstore.all_prefs()
        out: list[Nudge] = []
        for user, n in sorted((await self.qstore.due_by_user(t.timestamp())).items()):
            p = prefs.get(user) or {}
            if not p.get("nudge_enabled", 1):
                continue
            tz = ZoneInfo(p["tz"]) if p.get("tz") else self.tz
            last = from_ts(p["last_nudge_at"]) if p.get("last_nudge_at") is not None else None
            if nudge_due(t, last, tz, p.get("nudge_time") or default_time):
                out.append(Nudge(user, n, local_day(t, tz), p.get("channel_id")))
        return out

    async def set_nudge(self, user: str, *, at: str | None = None, tz: str | None = None,
                        enabled: bool | None = None, now: datetime | None = None) -> None:
        """A user's reminder settings (`/quiz nudge 21:00`, `/quiz nudge off`); QuizError on bad values."""
        values: dict[str, Any] = {}
        if at is not None:
            try:
                parse_hhmm(at)
            except ValueError as e:
                raise QuizError(f"时间格式应为 HH:MM / {e}") from None
            values["nudge_time"] = at.strip()
        if tz is not None:
            try:
                ZoneInfo(tz)
            except (KeyError, ValueError) as e:
                raise QuizError(f"未知时区 / unknown time zone {tz!r} (e.g. Asia/Shanghai)") from e
            values["tz"] = tz
        if enabled is not None:
            values["nudge_enabled"] = int(enabled)
        await self.qstore.set_prefs(user, self._now(now).timestamp(), **values)

    async def claim_nudge(self, nudge: Nudge, now: datetime | None = None) -> bool:
        """Exactly once per user and local day (the store's delivery key); False: already sent."""
        if not await self.qstore.store.claim("review_nudge", nudge.day, nudge.user_id):
            return False
        await self.qstore.set_prefs(nudge.user_id, self._now(now).timestamp(),
                                    last_nudge_at=self._now(now).timestamp())
        return True

    async def finish_nudge(self, nudge: Nudge, ok: bool) -> None:
        await self.qstore.store.finish_delivery("review_nudge", nudge.day, nudge.user_id, ok)


class QuizSession:
    """A handle on a stored session; cheap to rebuild from its id after a restart."""

    def __init__(self, service: QuizService, session_id: str) -> None:
        self.service = service
        self.id = session_id

    async def _row(self) -> dict[str, Any]:
        row = await self.service.qstore.session(self.id)
        if row is None:
            raise QuizError(f"测验不存在 / no such quiz session: {self.id}")
        return row

    def _question(self, qid: str) -> Question:
        q = self.service.bank.get(qid)
        if q is None:
            raise QuizError(f"题目已不在题库中 / question {qid} is no longer in the bank")
        return q

    def _view(self, row: dict[str, Any]) -> QuestionView:
        pos = row["position"]
        return QuestionView(self.id, pos, len(row["question_ids"]), self._question(row["question_ids"][pos]),
                            from_ts(row["shown_at"]), row["time_limit_s"], row["mode"])

    async def info(self) -> dict[str, Any]:
        return await self._row()

    async def current(self) -> QuestionView | None:
        row = await self._row()
        if row["state"] != "active" or row["position"] < 0:
            return None
        return self._view(row)

    async def next_question(self, now: datetime | None = None) -> QuestionView | None:
        """Show the next question (None when all were shown); concurrent calls advance once."""
        row = await self._row()
        if row["state"] != "active" or row["position"] + 1 >= len(row["question_ids"]):
            return None
        await self.service.qstore.advance(self.id, row["position"], self.service._now(now).timestamp())
        return self._view(await self._row())

    async def answer(self, user: str, choice: int, now: datetime | None = None,
                     question_id: str | None = None) -> Feedback:
        if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice <= 3:
            raise QuizError(f"答案须为 1-4 或 A-D / answer with 1-4 or A-D (got {choice!r})")
        svc = self.service
        t = svc._now(now)
        row = await self._row()
        pos = row["position"]
        current = row["question_ids"][pos] if pos >= 0 else None
        qid = question_id or current or row["question_ids"][0]
        q = self._question(qid)
        reason = ("finished" if row["state"] != "active" else "not_started" if current is None
                  else "closed" if qid != current else "ok")
        if reason != "ok":
            return _feedback(q, False, reason, None, False, 0)
        elapsed = max(0.0, t.timestamp() - row["shown_at"]) if row["shown_at"] is not None else None
        correct = choice == q.answer
        pts = points_for(correct, elapsed, row["time_limit_s"])
        try:
            out = await svc.qstore.record_answer(AnswerIn(
                session_id=self.id, question_id=q.id, position=pos, topic=q.topic, user_id=user,
                guild_id=row["guild_id"], choice=choice, correct=correct, points=pts, elapsed_s=elapsed,
                time_limit_s=row["time_limit_s"], now=t, day=local_day(t, svc.tz)), svc.srs)
        except AnswerRejected as e:
            if e.reason != "duplicate":
                return _feedback(q, False, e.reason, None, False, 0)
            # already answered: report the first answer, score nothing
            first = await svc.qstore.answer_of(self.id, q.id, user)
            assert first is not None
            srow = await svc.qstore.streak_row(user)
            fb = _feedback(q, False, "duplicate", int(first["choice"]), bool(first["correct"]), 0)
            fb.streak = live_streak(srow, local_day(t, svc.tz))
            return fb
        fb = _feedback(q, True, "ok", choice, correct, pts)
        fb.elapsed_s = elapsed
        fb.streak, fb.best_streak = out.streak, out.best_streak
        fb.rating = out.rating.name if out.rating is not None else None
        fb.next_due = out.next_due
        return fb

    async def finish(self, user: str | None = None, now: datetime | None = None) -> Summary:
        """Close the session (idempotent) and summarise it for `user` (default: who started it)."""
        svc = self.service
        t = svc._now(now)
        row = await self._row()
        await svc.qstore.finish_session(self.id, t.timestamp())
        who = user or row["user_id"]
        answers = await svc.qstore.session_answers(self.id)
        per: dict[str, UserResult] = {}
        for a in answers:
            r = per.setdefault(a["user_id"], UserResult(a["user_id"], 0, 0, 0))
            r.answered += 1
            r.correct += int(a["correct"])
            r.points += int(a["points"])
        mine = per.get(who, UserResult(who, 0, 0, 0))
        missed = [a["question_id"] for a in answers if a["user_id"] == who and not a["correct"]]
        _, due, nxt = await svc.qstore.card_counts(who, t.timestamp())
        srow = await svc.qstore.streak_row(who)
        return Summary(session_id=self.id, mode=row["mode"], topic=row["topic"], total=len(row["question_ids"]),
                       user_id=who, answered=mine.answered, correct=mine.correct, points=mine.points, missed=missed,
                       streak=live_streak(srow, local_day(t, svc.tz)), due_now=due, next_due=nxt,
                       users=sorted(per.values(), key=lambda r: (-r.points, r.user_id)))


def _feedback(q: Question, accepted: bool, reason: str, choice: int | None, correct: bool, points: int) -> Feedback:
    return Feedback(question_id=q.id, accepted=accepted, reason=reason, choice=choice, correct=correct,
                    answer=q.answer, answer_text=q.answer_text, explanation=q.explanation, ref=q.ref, points=points)
