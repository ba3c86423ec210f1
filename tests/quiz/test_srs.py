"""FSRS wrapper and the daily nudge decision: pure functions over fixed UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.quiz.srs import SRS, Rating, State, local_day, next_nudge_at, nudge_due, rating_for

T0 = datetime(2025, 3, 3, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(("correct", "elapsed", "rating"), [
    (False, 1.0, Rating.Again), (False, None, Rating.Again),
    (True, 2.0, Rating.Easy), (True, 10.0, Rating.Easy),
    (True, 15.0, Rating.Good), (True, None, Rating.Good),
    (True, 20.0, Rating.Hard), (True, 90.0, Rating.Hard),
])
def test_rating_from_correctness_and_speed(correct: bool, elapsed: float | None, rating: Rating) -> None:
    assert rating_for(correct, elapsed, 30.0) is rating


def test_card_round_trips_through_json_and_schedules_in_chat_sized_steps() -> None:
    srs = SRS(fuzz=False)
    card = srs.new_card("discord:1", "rlhf-01", T0)
    missed = srs.review(card, Rating.Again, T0).card
    assert missed.state is State.Learning and missed.due == T0 + timedelta(hours=1)
    again = SRS.loads(SRS.dumps(missed))  # as stored in SQLite
    assert again.due == missed.due and again.due.tzinfo is UTC
    good = srs.review(again, Rating.Good, again.due).card
    assert good.state is State.Review and good.due - again.due >= timedelta(days=1)
    # the same (user, question) always gets the same card id; no wall clock involved
    assert srs.new_card("discord:1", "rlhf-01", T0).card_id == card.card_id


def test_non_utc_inputs_are_converted() -> None:
    srs = SRS(fuzz=False)
    cst = T0.astimezone(timezone(timedelta(hours=8)))
    card = srs.review(srs.new_card("u", "q", cst), Rating.Again, cst).card
    assert card.due == T0 + timedelta(hours=1)


# Asia/Shanghai is UTC+8: a 20:00 nudge is 12:00 UTC
SH = "Asia/Shanghai"


def test_nudge_waits_for_the_users_local_time_then_fires_once_a_day() -> None:
    before = datetime(2025, 3, 3, 11, 59, tzinfo=UTC)
    at = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    assert not nudge_due(before, None, SH, "20:00")
    assert nudge_due(at, None, SH, "20:00")
    assert not nudge_due(at + timedelta(hours=3), at, SH, "20:00")  # sent today already
    assert nudge_due(at + timedelta(hours=3), at - timedelta(days=1), SH, "20:00")  # yesterday's does not count
    assert not nudge_due(at + timedelta(days=1) - timedelta(minutes=1), at, SH, "20:00")
    assert nudge_due(at + timedelta(days=1), at, SH, "20:00")


def test_nudge_time_is_per_user_zone() -> None:
    now = datetime(2025, 3, 3, 12, 30, tzinfo=UTC)  # 20:30 Shanghai, 13:30 London, 07:30 New York
    assert nudge_due(now, None, SH, "20:00")
    assert nudge_due(now, None, "Europe/London", "09:00")
    assert not nudge_due(now, None, "America/New_York", "09:00")


def test_next_nudge_at_for_the_scheduler() -> None:
    at = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    assert next_nudge_at(at - timedelta(hours=2), None, SH, "20:00") == at
    assert next_nudge_at(at + timedelta(minutes=5), None, SH, "20:00") == at + timedelta(minutes=5)  # now
    assert next_nudge_at(at + timedelta(minutes=5), at, SH, "20:00") == at + timedelta(days=1)


def test_local_day_rolls_over_at_local_midnight() -> None:
    assert local_day(datetime(2025, 3, 3, 15, 59, tzinfo=UTC), SH) == "2025-03-03"
    assert local_day(datetime(2025, 3, 3, 16, 0, tzinfo=UTC), SH) == "2025-03-04"
