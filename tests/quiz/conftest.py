"""Quiz fixtures: a real SQLite file, a fixed UTC clock that tests move by hand, seeded randomness."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.quiz.bank import default_bank
from bot.quiz.session import QuizService
from bot.quiz.srs import SRS
from bot.quiz.store import QuizStore
from bot.store import Store
from tests.clocks import DateClock

T0 = datetime(2025, 3, 3, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai


class Clock(DateClock):
    def __init__(self, start: datetime = T0) -> None:
        super().__init__(start)


def db_url(tmp_path: Path, name: str = "quiz.db") -> str:
    return f"sqlite+aiosqlite:///{tmp_path / name}"


def make_service(qstore: QuizStore, clock: Clock, seed: int = 7) -> QuizService:
    return QuizService(qstore, default_bank(), srs=SRS(fuzz=False), clock=clock, rng=random.Random(seed),
                       tz="Asia/Shanghai")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def qstore(tmp_path: Path) -> AsyncIterator[QuizStore]:
    store = await Store.open(db_url(tmp_path))
    try:
        yield await QuizStore.attach(store)
    finally:
        await store.close()


@pytest.fixture
def service(qstore: QuizStore, clock: Clock) -> QuizService:
    return make_service(qstore, clock)
