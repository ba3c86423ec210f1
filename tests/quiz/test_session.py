"""Quiz sessions on a real SQLite file with an injected clock: reviews, exactly-once answers,
restarts, streaks, boards and the daily nudge."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from bot.quiz.bank import default_bank
from bot.quiz.session import (
    ANSWER_ID_RE,
    BASE_POINTS,
    REVIEW_ID_RE,
    SPEED_BONUS_MAX,
    QuizError,
    QuizService,
    answer_custom_id,
    points_for,
    review_custom_id,
)
from bot.quiz.store import AnswerIn, AnswerRejected, QuizStore
from bot.store import Store

from .conftest import Clock, db_url, make_service

U = "discord:1001"


def wrong(q_answer: int) -> int:
    return (q_answer + 1) % 4


async def test_missed_question_is_due_after_the_interval_offered_by_review_and_pushed_out(
        service: QuizService, clock: Clock, qstore: QuizStore) -> None:
    s = await service.start(U, "rlhf", 2)
    v = await s.next_question()
    assert v is not None and v.index == 0 and v.total == 2
    missed = v.question
    clock.advance(seconds=12)
    fb = await s.answer(U, wrong(missed.answer))
    assert fb.accepted and not fb.correct and fb.points == 0 and fb.rating == "Again"
    assert fb.explanation == missed.explanation and fb.ref == {"path": missed.ref_path, "heading": missed.ref_heading}
    first_due = clock.now + timedelta(hours=1)
    assert fb.next_due == first_due
    # a correct answer to a question never missed makes no card
    v2 = await s.next_question()
    assert v2 is not None
    clock.advance(seconds=5)
    ok = await s.answer(U, v2.question.answer)
    assert ok.correct and ok.rating is None and await qstore.card_row(U, v2.question.id) is None
    summary = await s.finish()
    assert (summary.correct, summary.answered, summary.missed) == (1, 2, [missed.id])

    clock.now = first_due - timedelta(minutes=1)
    assert await service.start_review(U) is None
    assert await service.due(U) == []
    clock.now = first_due + timedelta(minutes=1)
    assert [(q.id, d) for q, d in await service.due(U)] == [(missed.id, first_due)]
    review = await service.start_review(U)
    assert review is not None
    rv = await review.next_question()
    assert rv is not None and rv.mode == "review" and rv.question.id == missed.id and rv.total == 1
    clock.advance(seconds=12)  # between a third and two thirds of 30 s: Good
    good = await review.answer(U, missed.answer)
    assert good.correct and good.rating == "Good"
    assert good.next_due is not None and good.next_due - clock.now >= timedelta(days=1)
    assert await service.start_review(U) is None  # nothing due any more
    card = await qstore.card_row(U, missed.id)
    assert card is not None and (card["reps"], card["lapses"], card["state"]) == (2, 1, 2)
    logs = await qstore.review_logs(U, missed.id)
    assert [r["rating"] for r in logs] == [1, 3] and logs[1]["due_after"] == good.next_due.timestamp()
    # a later miss of a graduated card sends it back to relearning within hours
    clock.now = good.next_due + timedelta(minutes=1)
    again = await service.start_review(U)
    assert again is not None and await again.next_question() is not None
    lapse = await again.answer(U, wrong(missed.answer), now=clock.advance(seconds=3))
    assert lapse.rating == "Again" and lapse.next_due is not None
    assert lapse.next_due - clock.now <= timedelta(hours=1)


async def test_concurrent_answers_from_one_user_count_once(tmp_path: Path, clock: Clock) -> None:
    url = db_url(tmp_path)
    a, b = await Store.open(url), await Store.open(url)  # two processes on one database file
    try:
        sa = make_service(await QuizStore.attach(a), clock)
        sb = make_service(await QuizStore.attach(b), clock)
        s = await sa.start(U, "sft_peft", 2, guild="g1")
        v = await s.next_question()
        other = await sb.resume(s.id)
        assert v is not None and other is not None
        clock.advance(seconds=3)
        r1, r2 = await asyncio.gather(s.answer(U, v.question.answer), other.answer(U, wrong(v.question.answer)))
        assert sorted(f.reason for f in (r1, r2)) == ["duplicate", "ok"]
        first = r1 if r1.accepted else r2
        dup = r2 if r1.accepted else r1
        assert dup.points == 0 and dup.choice == first.choice  # the duplicate reports the first answer
        rows = await sa.qstore.session_answers(s.id)
        assert len(rows) == 1 and rows[0]["choice"] == first.choice
        # a burst of double clicks on the next question, on one store
        v2 = await s.next_question()
        assert v2 is not None
        burst = await asyncio.gather(*(s.answer(U, i % 4) for i in range(6)))
        assert sum(f.accepted for f in burst) == 1
        totals = await sb.qstore.totals(U)
        assert totals["answered"] == 2
        assert totals["points"] == first.points + sum(f.points for f in burst if f.accepted)
        streak = await sb.qstore.streak_row(U)
        assert streak is not None and streak["current"] == 1
    finally:
        await a.close()
        await b.close()


async def test_scores_streaks_and_sessions_survive_a_restart(tmp_path: Path, clock: Clock) -> None:
    url = db_url(tmp_path)
    store = await Store.open(url)
    svc = make_service(await QuizStore.attach(store), clock)
    s = await svc.start(U, "rag", 3, guild="g1")
    v = await s.next_question()
    assert v is not None
    clock.advance(seconds=6)
    fb = await s.answer(U, v.question.answer)
    assert fb.points == points_for(True, 6.0, 30.0) == BASE_POINTS + 40 and fb.streak == 1
    await store.close()

    store = await Store.open(url)  # the bot restarted
    try:
        svc = make_service(await QuizStore.attach(store), clock, seed=99)
        s2 = await svc.resume(s.id)
        assert s2 is not None
        cur = await s2.current()
        assert cur is not None and cur.question.id == v.question.id
        again = await s2.answer(U, v.question.answer)  # the old button clicked after the restart
        assert again.reason == "duplicate" and again.points == 0
        st = await svc.stats(U)
        assert (st.points, st.answered, st.correct, st.streak, st.sessions) == (fb.points, 1, 1, 1, 1)

        clock.advance(days=1)  # next day: the streak grows
        nxt = await s2.next_question()
        assert nxt is not None
        day2 = await s2.answer(U, wrong(nxt.question.answer), now=clock.advance(seconds=40))
        assert day2.streak == 2 and day2.points == 0
        clock.advance(days=2)  # a day without answers breaks it
        st = await svc.stats(U)
        assert (st.streak, st.best_streak) == (0, 2)
        s3 = await svc.start(U, "rag", 1)
        v3 = await s3.next_question()
        assert v3 is not None
        assert (await s3.answer(U, v3.question.answer)).streak == 1
        assert (await svc.stats(U)).best_streak == 2

        # another user on another server; boards per server and global
        o = await svc.start("discord:2002", "rag", 1, guild="g2")
        ov = await o.next_question()
        assert ov is not None
        await o.answer("discord:2002", ov.question.answer, now=clock.now)  # instant: full speed bonus
        g1 = await svc.leaderboard("g1")
        assert [r["user_id"] for r in g1] == [U]
        everyone = await svc.leaderboard()
        assert {r["user_id"] for r in everyone} == {U, "discord:2002"}
        assert everyone[0]["points"] >= everyone[1]["points"]
        assert next(r for r in everyone if r["user_id"] == U)["points"] == (await svc.stats(U)).points
    finally:
        await store.close()


async def test_speed_bonus_and_closed_questions(service: QuizService, clock: Clock) -> None:
    assert points_for(True, 0.0, 30) == BASE_POINTS + SPEED_BONUS_MAX
    assert points_for(True, 15.0, 30) == BASE_POINTS + SPEED_BONUS_MAX // 2
    assert points_for(True, 45.0, 30) == BASE_POINTS
    assert points_for(False, 1.0, 30) == 0
    s = await service.start(U, "nlp", 2)
    not_started = await s.answer(U, 0)
    assert not not_started.accepted and not_started.reason == "not_started"
    v1 = await s.next_question()
    v2 = await s.next_question()  # moved on without answering
    assert v1 is not None and v2 is not None and v1.question.id != v2.question.id
    late = await s.answer(U, v1.question.answer, question_id=v1.question.id)
    assert not late.accepted and late.reason == "closed"
    # a click read before the timer moved on but written after: refused inside the transaction
    with pytest.raises(AnswerRejected, match="closed"):
        await service.qstore.record_answer(AnswerIn(
            session_id=s.id, question_id=v1.question.id, position=0, topic="nlp", user_id=U, guild_id="",
            choice=v1.question.answer, correct=True, points=150, elapsed_s=1.0, time_limit_s=30, now=clock.now,
            day="2025-03-03"), service.srs)
    assert await service.qstore.session_answers(s.id) == []
    assert (await service.qstore.totals(U))["answered"] == 0
    await s.finish()
    after = await s.answer(U, v2.question.answer)
    assert after.reason == "finished" and not after.accepted
    assert await s.next_question() is None
    with pytest.raises(QuizError, match="1-4"):
        await s.answer(U, 7)


async def test_a_channel_session_scores_each_user_once(service: QuizService, clock: Clock) -> None:
    s = await service.start(U, "prompting", 1, guild="g1", channel="c1")
    v = await s.next_question()
    assert v is not None
    clock.advance(seconds=2)
    a = await s.answer(U, v.question.answer)
    b = await s.answer("discord:2002", wrong(v.question.answer), now=clock.advance(seconds=1))
    assert a.accepted and b.accepted and a.correct and not b.correct
    summary = await s.finish()
    assert [(r.user_id, r.correct) for r in summary.users] == [(U, 1), ("discord:2002", 0)]
    assert (await service.qstore.prefs(U) or {}).get("channel_id") == "c1"


async def test_start_checks_topic_and_count_and_prefers_unseen_questions(service: QuizService,
                                                                        clock: Clock) -> None:
    with pytest.raises(QuizError, match=r"unknown topic 'cooking'.*rlhf"):
        await service.start(U, "cooking")
    with pytest.raises(QuizError, match="count"):
        await service.start(U, "rlhf", 0)
    first = await service.start(U, "RLHF", 8)
    seen = []
    while (v := await first.next_question()) is not None:
        seen.append(v.question.id)
        await first.answer(U, v.question.answer)
    second = await service.start(U, "rlhf", 8)
    ids = (await second.info())["question_ids"]
    assert len(ids) == 8 and not set(ids) & set(seen)
    mixed = await service.start(U, None, 10)
    topics = {service.bank.get(q).topic for q in (await mixed.info())["question_ids"]}  # type: ignore[union-attr]
    assert len(topics) > 1


async def test_daily_nudge_goes_to_users_with_due_reviews_once_a_day(service: QuizService, clock: Clock) -> None:
    s = await service.start(U, "quantization", 1)
    v = await s.next_question()
    assert v is not None
    await s.answer(U, wrong(v.question.answer), now=clock.advance(seconds=5))  # due an hour later
    await s.finish()
    clock.now = clock.now.replace(hour=11, minute=0)  # 19:00 in Shanghai: too early
    assert await service.nudges() == []
    clock.now = clock.now.replace(hour=12, minute=5)  # 20:05
    [n] = await service.nudges()
    assert (n.user_id, n.due, n.day) == (U, 1, "2025-03-03")
    assert await service.claim_nudge(n) is True
    assert await service.claim_nudge(n) is False  # a second scheduler tick or process
    await service.finish_nudge(n, ok=True)
    assert await service.nudges() == []
    clock.advance(days=1)
    [n2] = await service.nudges()
    assert n2.day == "2025-03-04"
    await service.set_nudge(U, enabled=False)
    assert await service.nudges() == []
    await service.set_nudge(U, enabled=True, tz="Europe/London", at="09:00")
    assert [x.user_id for x in await service.nudges()] == [U]  # 12:05 in London
    with pytest.raises(QuizError, match="HH:MM"):
        await service.set_nudge(U, at="25:00")
    with pytest.raises(QuizError, match="unknown time zone"):
        await service.set_nudge(U, tz="Mars/Olympus")


def test_button_ids_fit_discord_and_round_trip() -> None:
    sid = "0" * 32
    for q in default_bank().questions:
        cid = answer_custom_id(sid, q.id, 3)
        m = ANSWER_ID_RE.match(cid)
        assert len(cid) <= 100 and m is not None and (m["question"], m["choice"]) == (q.id, "3")
    m = REVIEW_ID_RE.match(review_custom_id("discord:123456789012345678"))
    assert m is not None and m["user"] == "discord:123456789012345678"
