"""The adapter's Discord-free parts on a real SQLite store: forgetting and retention, budgets,
rate limits, the reply-chain index; and the daily review nudge with its persistent button."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.discord_app.client import StudyBot
from bot.discord_app.data import ConversationIndex
from bot.discord_app.limits import RateLimiter, TokenBudget, estimate_tokens
from bot.discord_app.views import QuizReviewButton
from bot.quiz.session import QuizService
from bot.quiz.srs import SRS
from bot.store import Store

from .conftest import Clock
from .fakes import FakeChannel, FakeInteraction, FakeMessage, FakeUser, Log
from .test_commands import NONE


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/d.db", clock=lambda: 1_000_000.0)
    yield s  # type: ignore[misc]
    await s.close()


async def test_token_budget_per_scope_and_day(store: Store) -> None:
    clock = Clock()

    async def get() -> Store:
        return store

    b = TokenBudget(get, 100, "Asia/Shanghai", clock=lambda: 1_767_225_600.0 + clock.now)  # 08:00 in Shanghai
    assert not await b.exhausted("guild:1")
    await b.charge("guild:1", 60)
    await b.charge("guild:1", 50)
    assert await b.exhausted("guild:1") and await b.remaining("guild:1") == 0
    assert not await b.exhausted("guild:2")
    clock.advance(16 * 3600)  # past midnight in Shanghai: a new day
    assert not await b.exhausted("guild:1")
    unlimited = TokenBudget(get, 0, "Asia/Shanghai")
    await unlimited.charge("guild:1", 10**9)
    assert not await unlimited.exhausted("guild:1") and await unlimited.remaining("guild:1") is None
    assert estimate_tokens("你好" * 50, "") == 50


def test_rate_limiter_sliding_window() -> None:
    clock = Clock()
    rl = RateLimiter(3, clock=clock)
    assert [rl.hit("u") for _ in range(3)] == [None, None, None]
    wait = rl.hit("u")
    assert wait is not None and 59 < wait <= 60
    clock.advance(30)
    assert rl.hit("u") is not None and rl.hit("v") is None
    clock.advance(30.1)
    assert rl.hit("u") is None


async def test_conversation_index_survives_its_memory(store: Store) -> None:
    async def get() -> Store:
        return store

    idx = ConversationIndex(get, capacity=2)
    for i in range(5):
        await idx.remember(i, f"discord:msg:{i}")
    assert len(idx._mem) == 2
    assert await idx.lookup(0) == "discord:msg:0"  # from the store
    assert await idx.lookup(99) is None


async def test_review_nudge_pings_only_its_user_and_its_button_starts_their_review(
        bot: StudyBot, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [datetime(2026, 1, 2, 13, 0, tzinfo=UTC)]  # 21:00 in Shanghai, after the 20:00 nudge time
    svc = await QuizService.for_app(bot.app, clock=lambda: now[0], rng=random.Random(3), srs=SRS(fuzz=False))
    bot._quiz = svc
    log = Log()
    channel = FakeChannel(log)
    user = FakeUser(name="carol")
    uid = f"discord:{user.id}"
    session = await svc.start(uid, "rag", 1, guild="1", channel=str(channel.id))
    q = await session.next_question()
    assert q is not None
    await session.answer(uid, (q.question.answer + 1) % 4)  # wrong: a card to review
    now[0] += timedelta(days=1)
    monkeypatch.setattr(bot, "get_partial_messageable", lambda cid: channel)
    await bot.send_nudges()
    (nudge,) = log.of("send")
    assert nudge.mentions == {"parse": [], "users": [user.id]}  # this user, nobody else
    (button,) = nudge.kwargs["view"].children
    assert isinstance(button, QuizReviewButton)
    await bot.send_nudges()
    assert len(log.of("send")) == 1  # once a day
    # someone else clicks: refused; the user clicks: their review starts
    msg = FakeMessage(log, channel=channel)
    other = FakeInteraction(bot, log, user=FakeUser(name="mallory"), message=msg)
    assert not await button.interaction_check(other)
    mine = FakeInteraction(bot, log, user=user, message=msg)
    assert await button.interaction_check(mine)
    await button.callback(mine)
    post = log.calls[-1]
    assert post.what == "followup" and "复习" in post.embeds[0].title and post.mentions == NONE
