"""Spaced repetition with FSRS (py-fsrs 6.x), plus the daily review-nudge decision.

A card exists per (user, question) from the first miss on. Ratings come from correctness and
speed. Steps are chat-sized (an hour, not a minute): a quiz is not an Anki session.
Everything takes explicit UTC datetimes so tests drive it with a fixed clock.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fsrs import Card, Rating, ReviewLog, Scheduler, State

LEARNING_STEPS = (timedelta(hours=1),)
RELEARNING_STEPS = (timedelta(hours=1),)
MAXIMUM_INTERVAL_DAYS = 365
# answer speed as a share of the question's time limit
FAST_SHARE = 1 / 3
SLOW_SHARE = 2 / 3

__all__ = ["SRS", "UTC", "Card", "Rating", "ReviewLog", "Reviewed", "State", "local_day", "next_nudge_at", "nudge_due",
           "parse_hhmm", "rating_for", "utc"]


def utc(dt: datetime) -> datetime:
    """py-fsrs insists on `tzinfo is timezone.utc`; naive datetimes are taken as UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def from_ts(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def rating_for(correct: bool, elapsed_s: float | None, limit_s: float) -> Rating:
    """wrong → Again; correct but slow → Hard; correct → Good; correct and fast → Easy."""
    if not correct:
        return Rating.Again
    if elapsed_s is None or limit_s <= 0:
        return Rating.Good
    if elapsed_s <= limit_s * FAST_SHARE:
        return Rating.Easy
    if elapsed_s >= limit_s * SLOW_SHARE:
        return Rating.Hard
    return Rating.Good


@dataclass(slots=True)
class Reviewed:
    card: Card
    log: ReviewLog
    rating: Rating


class SRS:
    """A configured FSRS scheduler. `fuzz=False` makes intervals exact (tests)."""

    def __init__(self, *, fuzz: bool = True, desired_retention: float = 0.9) -> None:
        self.scheduler = Scheduler(desired_retention=desired_retention, learning_steps=LEARNING_STEPS,
                                   relearning_steps=RELEARNING_STEPS, maximum_interval=MAXIMUM_INTERVAL_DAYS,
                                   enable_fuzzing=fuzz)

    @staticmethod
    def new_card(user_id: str, question_id: str, now: datetime) -> Card:
        # an explicit id: Card() would otherwise read the wall clock and sleep 1 ms
        cid = zlib.crc32(f"{user_id}\x00{question_id}".encode()) or 1
        return Card(card_id=cid, due=utc(now))

    def review(self, card: Card, rating: Rating, now: datetime, duration_ms: int | None = None) -> Reviewed:
        new, log = self.scheduler.review_card(card, rating, review_datetime=utc(now), review_duration=duration_ms)
        return Reviewed(new, log, rating)

    def retrievability(self, card: Card, now: datetime) -> float:
        return float(self.scheduler.get_card_retrievability(card, current_datetime=utc(now)))

    @staticmethod
    def dumps(card: Card) -> str:
        return card.to_json()

    @staticmethod
    def loads(text: str) -> Card:
        card = Card.from_json(text)
        # fromisoformat gives a fixed-offset zone; py-fsrs compares against timezone.utc
        card.due = utc(card.due)
        if card.last_review is not None:
            card.last_review = utc(card.last_review)
        return card


# ---- the daily review nudge (a pure decision; the scheduler only asks "now?") ---------------------

def parse_hhmm(at: str) -> time:
    """'20:00' → time(20, 0); ValueError naming the expected form otherwise."""
    try:
        hh, mm = (int(x) for x in at.strip().split(":", 1))
        return time(hh, mm)
    except ValueError:
        raise ValueError(f"{at!r} is not a time of day HH:MM (e.g. 20:00)") from None


def _slot(day: date, zone: ZoneInfo, at: str) -> datetime:
    return datetime.combine(day, parse_hhmm(at), tzinfo=zone)


def _zone(tz: ZoneInfo | str) -> ZoneInfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def nudge_due(now: datetime, last_nudge: datetime | None, tz: ZoneInfo | str, at: str = "20:00") -> bool:
    """True when today's nudge time (in the user's zone) has passed and no nudge went out since it."""
    zone = _zone(tz)
    slot = _slot(utc(now).astimezone(zone).date(), zone, at)
    if utc(now) < slot:
        return False
    return last_nudge is None or utc(last_nudge) < slot


def next_nudge_at(now: datetime, last_nudge: datetime | None, tz: ZoneInfo | str, at: str = "20:00") -> datetime:
    """When the scheduler should look again for this user (UTC)."""
    zone = _zone(tz)
    if nudge_due(now, last_nudge, zone, at):
        return utc(now)
    today = utc(now).astimezone(zone).date()
    slot = _slot(today, zone, at)
    if utc(now) >= slot:  # today's went out already: tomorrow's slot
        slot = _slot(today + timedelta(days=1), zone, at)
    return utc(slot)


def local_day(now: datetime, tz: ZoneInfo | str) -> str:
    return utc(now).astimezone(_zone(tz)).date().isoformat()
