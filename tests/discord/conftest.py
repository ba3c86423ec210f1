"""Fixtures for the Discord adapter: a real App (loopback OpenAI-compatible stub, real SQLite,
real embeddings) and a real StudyBot with its cogs, never connected; fakes only at Discord."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.app import App
from bot.config import load_settings
from bot.discord_app import build_bot
from bot.discord_app.client import StudyBot
from tests.clocks import ManualClock
from tests.stubs import openai_wire as W
from tests.stubs.http_server import Reply, Script, StubServer

from .fakes import FakeChannel, FakeGuild, FakeInteraction, FakeUser, Log

BOT_ID = 1000
EPOCH = 1_767_225_600.0  # 2026-01-01 00:00 UTC


class Clock(ManualClock):
    """Injected time: monotonic for throttles and rate limits, wall time (from 2026-01-01) for budgets."""

    def __init__(self) -> None:
        super().__init__(wall_origin=EPOCH)


class LLM:
    """The loopback model server: replies queued by the test, a default otherwise."""

    def __init__(self, server: StubServer, queue: deque[Reply]) -> None:
        self.server = server
        self.queue = queue

    def reply(self, *pieces: str, usage: tuple[int, int] | None = (12, None)) -> None:
        self.queue.append(W.text_stream(list(pieces), usage=usage))

    def push(self, reply: Reply) -> None:
        self.queue.append(reply)

    @property
    def requests(self) -> list[Any]:
        return [r for r in self.server.requests if r.path.endswith("/chat/completions")]


@pytest.fixture
async def llm() -> AsyncIterator[LLM]:
    queue: deque[Reply] = deque()

    def handler(req: Any) -> Reply:
        return queue.popleft() if queue else W.text_stream(["好的。"])

    server = await StubServer(Script({"/chat/completions": handler})).start()
    yield LLM(server, queue)
    await server.close()


@pytest.fixture
async def app(llm: LLM, monkeypatch: pytest.MonkeyPatch, kb_data_dir: Path, tmp_path: Path) -> AsyncIterator[App]:
    monkeypatch.setenv("STUDYBOT_DATA_DIR", str(kb_data_dir))
    monkeypatch.setenv("STUDYBOT_DATABASE_URL", f"sqlite:///{tmp_path}/bot.db")
    monkeypatch.setenv("STUDYBOT_PROVIDERS", "vllm,offline")
    monkeypatch.setenv("VLLM_BASE_URL", llm.server.url + "/v1")
    monkeypatch.setenv("VLLM_MODEL", "stub-model")
    monkeypatch.setenv("TOOL_MAX_ROUNDS", "0")
    monkeypatch.setenv("RATE_LIMIT_USER_PER_MIN", "100")
    a = App(load_settings())
    yield a
    await a.aclose()


@pytest.fixture
async def bot(app: App) -> AsyncIterator[StudyBot]:
    clock = Clock()
    b = build_bot(app, clock=clock, wall_clock=clock.wall)
    b.test_clock = clock  # type: ignore[attr-defined]
    await b.load_cogs()
    b._connection.user = discord.ClientUser(state=b._connection, data={  # type: ignore[typeddict-item]
        "id": str(BOT_ID), "username": "studybot", "discriminator": "0", "avatar": None, "bot": True})
    yield b


def command(bot: StudyBot, path: str) -> Any:
    """A slash command of the tree by its path ("digest now")."""
    head, *rest = path.split()
    cmd: Any = bot.tree.get_command(head)
    for name in rest:
        cmd = cmd.get_command(name)
    assert cmd is not None, path
    return cmd


async def invoke(bot: StudyBot, path: str, interaction: FakeInteraction, **options: Any) -> None:
    """Call a command's callback the way the tree does after parsing (python-discord style)."""
    cmd = command(bot, path)
    await cmd.callback(cmd.binding, interaction, **options)


def interaction(bot: StudyBot, *, admin: bool = False, dm: bool = False, log: Log | None = None,
                user: FakeUser | None = None, guild: FakeGuild | None = None,
                channel: FakeChannel | None = None) -> FakeInteraction:
    perms = discord.Permissions(manage_guild=True) if admin else discord.Permissions(send_messages=True)
    return FakeInteraction(bot, log, user=user, guild=guild, channel=channel, permissions=perms, dm=dm)
