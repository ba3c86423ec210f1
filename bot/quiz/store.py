"""Quiz tables (migration 3) and their queries, on the shared `bot.store.Store` engine.

Exactly-once answers: the unique key (session, question, user) is written first in the answer's
transaction, so a double click, two processes or a retry after a restart count once; the score,
streak, FSRS card and review log change in that same transaction or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.store import Store, metadata, register_migration

from .srs import SRS, Rating, from_ts, rating_for

QUIZ_VERSION = 3
NO_GUILD = ""  # terminal and DMs: counted in the global board only

quiz_sessions = Table(
    "quiz_sessions", metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(64), nullable=False),  # who started it
    Column("guild_id", String(64), nullable=False, default=NO_GUILD),
    Column("channel_id", String(64)),
    Column("topic", String(64)),  # None: mixed topics
    Column("mode", String(16), nullable=False),  # quiz | review
    Column("question_ids", Text, nullable=False),  # JSON list
    Column("position", Integer, nullable=False, default=-1),  # index of the question on show
    Column("shown_at", Float),  # when it was shown (speed bonus, FSRS speed)
    Column("time_limit_s", Float, nullable=False),
    Column("state", String(16), nullable=False),  # active | finished
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Index("ix_quiz_sessions_user", "user_id", "created_at"),
)
quiz_answers = Table(
    "quiz_answers", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(32), ForeignKey("quiz_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("question_id", String(64), nullable=False),
    Column("topic", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("guild_id", String(64), nullable=False, default=NO_GUILD),
    Column("choice", Integer, nullable=False),
    Column("correct", Integer, nullable=False),
    Column("points", Integer, nullable=False),
    Column("elapsed_s", Float),
    Column("answered_at", Float, nullable=False),
    UniqueConstraint("session_id", "question_id", "user_id", name="uq_quiz_answer"),
    Index("ix_quiz_answers_user", "user_id", "answered_at"),
)
quiz_scores = Table(
    "quiz_scores", metadata,
    Column("user_id", String(64), primary_key=True),
    Column("guild_id", String(64), primary_key=True),  # NO_GUILD for terminal and DMs
    Column("points", Integer, nullable=False, default=0),
    Column("answered", Integer, nullable=False, default=0),
    Column("correct", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
    Index("ix_quiz_scores_board", "guild_id", "points"),
)
quiz_streaks = Table(
    "quiz_streaks", metadata,
    Column("user_id", String(64), primary_key=True),
    Column("current", Integer, nullable=False),
    Column("best", Integer, nullable=False),
    Column("last_day", String(10), nullable=False),  # local date of the last answer
    Column("updated_at", Float, nullable=False),
)
quiz_cards = Table(
    "quiz_cards", metadata,
    Column("user_id", String(64), primary_key=True),
    Column("question_id", String(64), primary_key=True),
    Column("card", Text, nullable=False),  # py-fsrs Card JSON
    Column("due", Float, nullable=False),
    Column("state", Integer, nullable=False),
    Column("reps", Integer, nullable=False, default=0),
    Column("lapses", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_quiz_cards_due", "user_id", "due"),
)
quiz_review_logs = Table(
    "quiz_review_logs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(64), nullable=False),
    Column("question_id", String(64), nullable=False),
    Column("session_id", String(32)),
    Column("rating", Integer, nullable=False),
    Column("reviewed_at", Float, nullable=False),
    Column("due_after", Float, nullable=False),  # the card's next due date after this review
    Column("log", Text, nullable=False),  # py-fsrs ReviewLog JSON
    Index("ix_quiz_logs_user", "user_id", "question_id", "reviewed_at"),
)
quiz_generated = Table(
    "quiz_generated", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("topic", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | rejected
    Column("payload", Text, nullable=False),  # the question dict (bank shape, no id until approved)
    Column("chunk", Text, nullable=False),  # {"path","heading","text"} it was drafted from
    Column("fingerprint", String(64), nullable=False, unique=True),  # same draft queued once
    Column("question_id", String(64), unique=True),  # set on approval
    Column("provider", String(64)),
    Column("model", String(128)),
    Column("created_at", Float, nullable=False),
    Column("decided_at", Float),
    Column("decided_by", String(64)),
    Column("note", Text),
    Index("ix_quiz_generated_status", "status", "id"),
)
quiz_prefs = Table(
    "quiz_prefs", metadata,
    Column("user_id", String(64), primary_key=True),
    Column("tz", String(64)),  # None: STUDYBOT_TZ
    Column("nudge_time", String(5)),  # None: the default
    Column("nudge_enabled", Integer, nullable=False, default=1),
    Column("last_nudge_at", Float),
    Column("channel_id", String(64)),  # where the user last quizzed (adapters may nudge there)
    Column("updated_at", Float, nullable=False),
)

TABLES = (quiz_sessions, quiz_answers, quiz_scores, quiz_streaks, quiz_cards, quiz_review_logs, quiz_generated,
          quiz_prefs)
register_migration(QUIZ_VERSION, TABLES)


def _insert_for(conn: AsyncConnection) -> Any:
    """The dialect's INSERT with ON CONFLICT support (SQLite and PostgreSQL share the API)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def next_streak(row: dict[str, Any] | None, day: str) -> tuple[int, int]:
    """(current, best) after an answer on local `day`."""
    if row is None:
        return 1, 1
    last, cur, best = row["last_day"], int(row["current"]), int(row["best"])
    if last == day:
        return cur, best
    if last == (date.fromisoformat(day) - timedelta(days=1)).isoformat():
        cur += 1
    elif last < day:
        cur = 1
    # an answer dated before the last one (clock skew) changes nothing
    return cur, max(best, cur)


def live_streak(row: dict[str, Any] | None, today: str) -> int:
    """The current streak as of `today`: broken when yesterday had no answer."""
    if row is None:
        return 0
    yesterday = (date.fromisoformat(today) - timedelta(days=1)).isoformat()
    return int(row["current"]) if row["last_day"] in (today, yesterday) else 0


class AnswerRejected(Exception):
    """The answer was not recorded: `duplicate` (already answered) or `closed` (the quiz moved on)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class AnswerIn:
    session_id: str
    question_id: str
    position: int  # the session's question index this answer is for
    topic: str
    user_id: str
    guild_id: str
    choice: int
    correct: bool
    points: int
    elapsed_s: float | None
    time_limit_s: float
    now: datetime
    day: str  # local date for the streak


@dataclass(slots=True)
class AnswerOut:
    streak: int
    best_streak: int
    rating: Rating | None  # None: no card (a correct answer to a question never missed)
    next_due: datetime | None


class QuizStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    @classmethod
    async def attach(cls, store: Store) -> QuizStore:
        """Make sure migration 3 is applied (the store may have opened before this module loaded)."""
        await store.migrate()
        return cls(store)

    # -- sessions ---------------------------------------------------------------------------------

    async def create_session(self, sid: str, *, user_id: str, guild_id: str, channel_id: str | None,
                             topic: str | None, mode: str, question_ids: list[str], time_limit_s: float,
                             now: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(quiz_sessions).values(
                id=sid, user_id=user_id, guild_id=guild_id, channel_id=channel_id, topic=topic, mode=mode,
                question_ids=json.dumps(question_ids), position=-1, shown_at=None, time_limit_s=time_limit_s,
                state="active", created_at=now))

    async def session(self, sid: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(quiz_sessions).where(quiz_sessions.c.id == sid))).mappings().first()
        if row is None:
            return None
        out = dict(row)
        out["question_ids"] = json.loads(out["question_ids"])
        return out

    async def advance(self, sid: str, expected: int, now: float) -> bool:
        """Move from question `expected` to the next; False if someone else already moved on."""
        async with self.engine.begin() as conn:
            res = await conn.execute(update(quiz_sessions).where(and_(
                quiz_sessions.c.id == sid, quiz_sessions.c.position == expected,
                quiz_sessions.c.state == "active")).values(position=expected + 1, shown_at=now))
            return res.rowcount == 1

    async def finish_session(self, sid: str, now: float) -> bool:
        async with self.engine.begin() as conn:
            res = await conn.execute(update(quiz_sessions).where(and_(
                quiz_sessions.c.id == sid, quiz_sessions.c.state == "active")).values(state="finished",
                                                                                        finished_at=now))
            return res.rowcount == 1

    async def active_session(self, user_id: str, channel_id: str | None = None) -> dict[str, Any] | None:
        """The newest unfinished session a user started (to resume after a restart)."""
        cond = and_(quiz_sessions.c.user_id == user_id, quiz_sessions.c.state == "active")
        if channel_id is not None:
            cond = and_(cond, quiz_sessions.c.channel_id == channel_id)
        async with self.engine.connect() as conn:
            sid = (await conn.execute(select(quiz_sessions.c.id).where(cond)
                                      .order_by(quiz_sessions.c.created_at.desc()).limit(1))).scalar()
        return await self.session(sid) if sid else None

    # -- answers: one transaction for the answer, score, streak, card and review log ---------------

    async def record_answer(self, a: AnswerIn, srs: SRS) -> AnswerOut:
        """Record once; AnswerRejected when already answered or the session moved on meanwhile."""
        ts = a.now.timestamp()
        try:
            async with self.engine.begin() as conn:
                # the unique key goes first: it takes the write lock and is the exactly-once gate
                await conn.execute(insert(quiz_answers).values(
                    session_id=a.session_id, question_id=a.question_id, topic=a.topic, user_id=a.user_id,
                    guild_id=a.guild_id, choice=a.choice, correct=int(a.correct), points=a.points,
                    elapsed_s=a.elapsed_s, answered_at=ts))
                # under the write lock: a timer that moved to the next question wins over a late click
                pos = (await conn.execute(select(quiz_sessions.c.position, quiz_sessions.c.state).where(
                    quiz_sessions.c.id == a.session_id))).first()
                if pos is None or pos[0] != a.position or pos[1] != "active":
                    raise AnswerRejected("closed")
                ins = _insert_for(conn)
                await conn.execute(ins(quiz_scores).values(
                    user_id=a.user_id, guild_id=a.guild_id, points=a.points, answered=1, correct=int(a.correct),
                    updated_at=ts).on_conflict_do_update(
                    index_elements=["user_id", "guild_id"],
                    set_={"points": quiz_scores.c.points + a.points, "answered": quiz_scores.c.answered + 1,
                          "correct": quiz_scores.c.correct + int(a.correct), "updated_at": ts}))
                srow = (await conn.execute(select(quiz_streaks).where(
                    quiz_streaks.c.user_id == a.user_id))).mappings().first()
                cur, best = next_streak(dict(srow) if srow else None, a.day)
                last_day = max(a.day, srow["last_day"]) if srow else a.day
                await conn.execute(ins(quiz_streaks).values(
                    user_id=a.user_id, current=cur, best=best, last_day=last_day, updated_at=ts
                ).on_conflict_do_update(index_elements=["user_id"], set_={
                    "current": cur, "best": best, "last_day": last_day, "updated_at": ts}))
                rating, due = await self._review_card(conn, a, srs)
        except IntegrityError:
            raise AnswerRejected("duplicate") from None
        return AnswerOut(cur, best, rating, due)

    async def _review_card(self, conn: AsyncConnection, a: AnswerIn, srs: SRS) -> tuple[Rating | None,
                                                                                          datetime | None]:
        key = and_(quiz_cards.c.user_id == a.user_id, quiz_cards.c.question_id == a.question_id)
        row = (await conn.execute(select(quiz_cards).where(key))).mappings().first()
        if row is None and a.correct:
            return None, None  # cards start at the first miss
        ts = a.now.timestamp()
        card = srs.loads(row["card"]) if row else srs.new_card(a.user_id, a.question_id, a.now)
        rating = rating_for(a.correct, a.elapsed_s, a.time_limit_s)
        duration = int(a.elapsed_s * 1000) if a.elapsed_s is not None else None
        done = srs.review(card, rating, a.now, duration)
        due = done.card.due.timestamp()
        values = {"card": srs.dumps(done.card), "due": due, "state": int(done.card.state.value),
                  "updated_at": ts}
        if row is None:
            await conn.execute(insert(quiz_cards).values(user_id=a.user_id, question_id=a.question_id, reps=1,
                                                         lapses=1, created_at=ts, **values))
        else:
            await conn.execute(update(quiz_cards).where(key).values(
                reps=quiz_cards.c.reps + 1, lapses=quiz_cards.c.lapses + (0 if a.correct else 1), **values))
        await conn.execute(insert(quiz_review_logs).values(
            user_id=a.user_id, question_id=a.question_id, session_id=a.session_id, rating=int(rating.value),
            reviewed_at=ts, due_after=due, log=done.log.to_json()))
        return rating, done.card.due

    async def answer_of(self, sid: str, question_id: str, user_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(quiz_answers).where(and_(
                quiz_answers.c.session_id == sid, quiz_answers.c.question_id == question_id,
                quiz_answers.c.user_id == user_id)))).mappings().first()
        return dict(row) if row else None

    async def answered_ids(self, user_id: str) -> set[str]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(quiz_answers.c.question_id).where(
                quiz_answers.c.user_id == user_id).distinct())).all()
        return {r[0] for r in rows}

    async def session_answers(self, sid: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(quiz_answers).where(quiz_answers.c.session_id == sid)
                                       .order_by(quiz_answers.c.id))).mappings().all()
        return [dict(r) for r in rows]

    # -- scores, streaks, boards ------------------------------------------------------------------

    async def streak_row(self, user_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(quiz_streaks).where(quiz_streaks.c.user_id == user_id))).mappings().first()
        return dict(row) if row else None

    async def totals(self, user_id: str) -> dict[str, int]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(
                func.coalesce(func.sum(quiz_scores.c.points), 0), func.coalesce(func.sum(quiz_scores.c.answered), 0),
                func.coalesce(func.sum(quiz_scores.c.correct), 0)).where(quiz_scores.c.user_id == user_id))).one()
            sessions = (await conn.execute(select(func.count()).select_from(quiz_sessions).where(
                quiz_sessions.c.user_id == user_id))).scalar_one()
        return {"points": int(row[0]), "answered": int(row[1]), "correct": int(row[2]), "sessions": int(sessions)}

    async def topic_accuracy(self, user_id: str) -> dict[str, tuple[int, int]]:
        """topic → (correct, answered)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(quiz_answers.c.topic, func.sum(quiz_answers.c.correct), func.count())
                                       .where(quiz_answers.c.user_id == user_id)
                                       .group_by(quiz_answers.c.topic))).all()
        return {r[0]: (int(r[1] or 0), int(r[2])) for r in rows}

    async def leaderboard(self, guild_id: str | None, limit: int = 10) -> list[dict[str, Any]]:
        """Per server when `guild_id` is given; otherwise global (every server, DMs and terminal)."""
        pts = func.sum(quiz_scores.c.points).label("points")
        q = (select(quiz_scores.c.user_id, pts, func.sum(quiz_scores.c.correct).label("correct"),
                    func.sum(quiz_scores.c.answered).label("answered"))
             .group_by(quiz_scores.c.user_id).order_by(pts.desc(), quiz_scores.c.user_id).limit(limit))
        if guild_id is not None:
            q = q.where(quiz_scores.c.guild_id == guild_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [{"rank": i, "user_id": r[0], "points": int(r[1]), "correct": int(r[2]), "answered": int(r[3])}
                for i, r in enumerate(rows, 1)]

    # -- cards and reviews ------------------------------------------------------------------------

    async def card_row(self, user_id: str, question_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(quiz_cards).where(and_(
                quiz_cards.c.user_id == user_id, quiz_cards.c.question_id == question_id)))).mappings().first()
        return dict(row) if row else None

    async def due_cards(self, user_id: str, now: float, limit: int = 20) -> list[tuple[str, datetime]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(quiz_cards.c.question_id, quiz_cards.c.due).where(and_(
                quiz_cards.c.user_id == user_id, quiz_cards.c.due <= now)).order_by(
                quiz_cards.c.due, quiz_cards.c.question_id).limit(limit))).all()
        return [(r[0], from_ts(r[1])) for r in rows]

    async def card_counts(self, user_id: str, now: float) -> tuple[int, int, datetime | None]:
        """(cards, due now, next due date)."""
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(quiz_cards).where(
                quiz_cards.c.user_id == user_id))).scalar_one()
            due = (await conn.execute(select(func.count()).select_from(quiz_cards).where(and_(
                quiz_cards.c.user_id == user_id, quiz_cards.c.due <= now)))).scalar_one()
            nxt = (await conn.execute(select(func.min(quiz_cards.c.due)).where(and_(
                quiz_cards.c.user_id == user_id, quiz_cards.c.due > now)))).scalar()
        return int(total), int(due), (from_ts(nxt) if nxt is not None else None)

    async def due_by_user(self, now: float) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(quiz_cards.c.user_id, func.count()).where(quiz_cards.c.due <= now)
                                       .group_by(quiz_cards.c.user_id))).all()
        return {r[0]: int(r[1]) for r in rows}

    async def review_logs(self, user_id: str, question_id: str | None = None) -> list[dict[str, Any]]:
        cond = quiz_review_logs.c.user_id == user_id
        if question_id is not None:
            cond = and_(cond, quiz_review_logs.c.question_id == question_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(quiz_review_logs).where(cond)
                                       .order_by(quiz_review_logs.c.id))).mappings().all()
        return [dict(r) for r in rows]

    # -- nudge preferences ---------------------------------------------------------------------------

    async def prefs(self, user_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(quiz_prefs).where(quiz_prefs.c.user_id == user_id))).mappings().first()
        return dict(row) if row else None

    async def all_prefs(self) -> dict[str, dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(quiz_prefs))).mappings().all()
        return {r["user_id"]: dict(r) for r in rows}

    async def set_prefs(self, user_id: str, now: float, **values: Any) -> None:
        allowed = {"tz", "nudge_time", "nudge_enabled", "last_nudge_at", "channel_id"}
        values = {k: v for k, v in values.items() if k in allowed}
        async with self.engine.begin() as conn:
            ins = _insert_for(conn)
            await conn.execute(ins(quiz_prefs).values(user_id=user_id, updated_at=now, **values)
                               .on_conflict_do_update(index_elements=["user_id"],
                                                      set_={**values, "updated_at": now}))

    # -- generated questions: the review queue -------------------------------------------------------

    async def add_draft(self, *, topic: str, payload: dict[str, Any], chunk: dict[str, Any], fingerprint: str,
                        provider: str | None, model: str | None, now: float) -> int | None:
        """The queue id, or None when the same draft is already queued."""
        try:
            async with self.engine.begin() as conn:
                res = await conn.execute(insert(quiz_generated).values(
                    topic=topic, status="pending", payload=json.dumps(payload, ensure_ascii=False),
                    chunk=json.dumps(chunk, ensure_ascii=False), fingerprint=fingerprint, provider=provider,
                    model=model, created_at=now))
                return int(res.inserted_primary_key[0])
        except IntegrityError:
            return None

    async def draft(self, draft_id: int) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(quiz_generated).where(quiz_generated.c.id == draft_id))).mappings().first()
        return _draft_row(row) if row else None

    async def drafts(self, status: str | None = "pending", topic: str | None = None) -> list[dict[str, Any]]:
        q = select(quiz_generated).order_by(quiz_generated.c.id)
        if status:
            q = q.where(quiz_generated.c.status == status)
        if topic:
            q = q.where(quiz_generated.c.topic == topic)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [_draft_row(r) for r in rows]

    async def decide_draft(self, draft_id: int, *, status: str, by: str | None, now: float,
                           question_id: str | None = None, payload: dict[str, Any] | None = None,
                           note: str | None = None) -> bool:
        """pending → approved/rejected once; False when it was not pending."""
        values: dict[str, Any] = {"status": status, "decided_at": now, "decided_by": by, "note": note,
                                  "question_id": question_id}
        if payload is not None:
            values["payload"] = json.dumps(payload, ensure_ascii=False)
        async with self.engine.begin() as conn:
            res = await conn.execute(update(quiz_generated).where(and_(
                quiz_generated.c.id == draft_id, quiz_generated.c.status == "pending")).values(**values))
            return res.rowcount == 1


def _draft_row(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["payload"] = json.loads(out["payload"])
    out["chunk"] = json.loads(out["chunk"])
    return out
