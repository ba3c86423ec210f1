"""Interactions built from raw gateway payloads, run through discord.py's own parsing, command
tree and view store, with its real HTTP client talking to a loopback stand-in of Discord's REST
API: what these tests read is the JSON that would have reached Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest

from bot.app import App
from bot.discord_app import build_bot
from bot.discord_app.client import StudyBot
from tests.stubs.http_server import StubServer

from .conftest import LLM
from .discord_api import APP_ID, GATEWAY_PATH, FakeDiscordAPI, command_payload, component_payload
from .test_commands import PINGS, RAW_PINGS

DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, AUTOCOMPLETE_RESULT = 5, 6, 8
EPHEMERAL = 64


@pytest.fixture
async def api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscordAPI]:
    fake = FakeDiscordAPI()
    server = await StubServer(fake).start()
    monkeypatch.setattr(discord.http.Route, "BASE", server.url + "/api/v10")
    yield fake
    await server.close()


async def logged_in(app: App) -> StudyBot:
    bot = build_bot(app)
    await bot.login("test-token")  # REST only: setup_hook runs (cogs, buttons, command sync); no gateway
    return bot


@pytest.fixture
async def live(app: App, api: FakeDiscordAPI) -> AsyncIterator[StudyBot]:
    app.settings.discord_dev_guild_id = 11
    bot = await logged_in(app)
    yield bot
    await bot.close()


def callbacks(api: FakeDiscordAPI) -> list[dict]:  # type: ignore[type-arg]
    return [r.json() for r in api.find("POST", r"/interactions/\d+/[^/]+/callback")]


def followups(api: FakeDiscordAPI) -> list[dict]:  # type: ignore[type-arg]
    return [r.json() for r in api.find("POST", rf"/webhooks/{APP_ID}/[^/]+")]


async def test_setup_hook_syncs_to_the_dev_guild_only(live: StudyBot, api: FakeDiscordAPI) -> None:
    (put,) = api.find("PUT", rf"/applications/{APP_ID}/guilds/11/commands")
    names = {c["name"] for c in put.json()}
    assert {"ask", "chat", "compare", "quiz", "digest", "model", "sync"} <= names
    assert not api.find("PUT", rf"/applications/{APP_ID}/commands")
    assert len(live._connection._view_store._dynamic_items) == 3  # persistent buttons registered


async def test_global_sync_happens_once_per_change(app: App, api: FakeDiscordAPI) -> None:
    for _ in range(2):
        bot = await logged_in(app)
        await bot.close()
    assert len(api.find("PUT", rf"/applications/{APP_ID}/commands")) == 1  # the second start found it current


async def test_ask_from_a_raw_payload_defers_then_answers_without_pings(live: StudyBot, api: FakeDiscordAPI,
                                                                       llm: LLM) -> None:
    llm.reply(PINGS)
    live._connection.parse_interaction_create(command_payload("ask", {"question": "有人吗？"}))  # type: ignore[arg-type]
    await api.wait_for(lambda: bool(followups(api)))
    (cb,) = callbacks(api)
    assert cb["type"] == DEFERRED_CHANNEL_MESSAGE and not (cb.get("data") or {}).get("flags")
    first_callback = api.calls.index(api.find("POST", r"/interactions/\d+/[^/]+/callback")[0])
    first_followup = api.calls.index(api.find("POST", rf"/webhooks/{APP_ID}/[^/]+")[0])
    assert first_callback < first_followup  # the acknowledgement went first
    (body,) = followups(api)
    assert body["allowed_mentions"] == {"parse": []}
    wire = str(body)
    assert "答案是 42" in wire and not any(raw in wire for raw in RAW_PINGS)


async def test_a_private_question_is_deferred_as_ephemeral(live: StudyBot, api: FakeDiscordAPI) -> None:
    live._connection.parse_interaction_create(  # type: ignore[arg-type]
        command_payload("ask", {"question": "什么是注意力？", "private": True}))
    await api.wait_for(lambda: bool(followups(api)))
    (cb,) = callbacks(api)
    assert cb["type"] == DEFERRED_CHANNEL_MESSAGE and cb["data"]["flags"] == EPHEMERAL


async def test_admin_commands_are_refused_to_members_by_payload(live: StudyBot, api: FakeDiscordAPI) -> None:
    live._connection.parse_interaction_create(  # type: ignore[arg-type]
        command_payload("digest", {"time": "07:00"}, sub="subscribe", permissions=0))
    await api.wait_for(lambda: bool(callbacks(api)))
    (cb,) = callbacks(api)
    assert cb["type"] == 4 and cb["data"]["flags"] == EPHEMERAL and "Manage Server" in str(cb)


async def test_autocomplete_from_a_payload(live: StudyBot, api: FakeDiscordAPI) -> None:
    live._connection.parse_interaction_create(  # type: ignore[arg-type]
        command_payload("model", {"name": "off"}, focused="name"))
    await api.wait_for(lambda: bool(callbacks(api)))
    (cb,) = callbacks(api)
    assert cb["type"] == AUTOCOMPLETE_RESULT
    assert next(c["value"] for c in cb["data"]["choices"]) == "offline"
    assert all("off" in c["value"] for c in cb["data"]["choices"])


async def test_a_quiz_button_click_from_a_payload(live: StudyBot, api: FakeDiscordAPI) -> None:
    live._connection.parse_interaction_create(  # type: ignore[arg-type]
        command_payload("quiz", {"topic": "rag", "count": 2}, sub="start"))
    await api.wait_for(lambda: bool(followups(api)))
    (post,) = followups(api)
    buttons = [c for row in post["components"] for c in row["components"]]
    assert len(buttons) == 4 and all(b["custom_id"].startswith("quiz:") for b in buttons)
    message = api.message(post, 22)
    # as after a restart: the view is rebuilt from the message and the custom_id (DynamicItem)
    live._connection._view_store._views.clear()
    live._connection.parse_interaction_create(component_payload(buttons[0]["custom_id"], message))  # type: ignore[arg-type]
    await api.wait_for(lambda: bool(api.find("PATCH", rf"/webhooks/{APP_ID}/[^/]+/messages/@original")))
    assert callbacks(api)[-1]["type"] == DEFERRED_UPDATE
    feedback = followups(api)[-1]
    assert feedback["flags"] == EPHEMERAL and ("正确" in feedback["content"] or "答错" in feedback["content"])
    (edit,) = api.find("PATCH", rf"/webhooks/{APP_ID}/[^/]+/messages/@original")
    nxt = edit.json()
    assert "第 2/2 题" in nxt["embeds"][0]["title"] and len(nxt["components"][0]["components"]) == 4


async def test_digest_sender_posts_over_rest_without_pings(app: App, api: FakeDiscordAPI) -> None:
    from bot.discord_app import digest_sender
    from jobs.digest import Digest

    app.settings.discord_token = "test-token"
    digest = Digest(date="2026-01-02", overview="概览 @everyone", news=[
        {"title": f"要闻{i}", "url": "http://paper.people.com.cn/a.htm", "page": "01版",
         "summary": f"第{i}篇：" + "政策进展与各地做法，工作安排和时间表。" * 9} for i in range(60)])
    async with digest_sender(app) as send:
        await send("22", digest)
    posts = [r.json() for r in api.find("POST", r"/channels/22/messages")]
    assert len(posts) >= 2
    for p in posts:
        assert p["allowed_mentions"] == {"parse": []}
        assert len(p["embeds"]) <= 10 and sum(len(str(e)) for e in p["embeds"]) < 9000
    assert "@everyone" not in str(posts)


async def test_a_bad_token_stops_with_a_clear_exit_code(app: App, api: FakeDiscordAPI) -> None:
    from bot.discord_app import arun_bot

    api.bad_tokens.add("wrong")
    app.settings.discord_token = "wrong"
    assert await arun_bot(app) == 2


async def test_sigterm_shuts_the_bot_down_gracefully(api: FakeDiscordAPI, tmp_path: Path) -> None:
    """`run_bot` in a real process: it logs in, logs a health line, and exits 0 on SIGTERM."""
    import asyncio
    import signal
    import sys

    from tests.conftest import ROOT, clean_env

    server_url = str(discord.http.Route.BASE).removesuffix("/api/v10")
    # REST and the gateway handshake both go to the loopback server, never to discord.com
    script = ("import os, sys, discord, discord.gateway, yarl\n"
              "discord.http.Route.BASE = os.environ['FAKE_DISCORD'] + '/api/v10'\n"
              "discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(\n"
              "    os.environ['FAKE_DISCORD'].replace('http', 'ws') + os.environ['GATEWAY_PATH'] + '/')\n"
              "from bot.app import App\nfrom bot.config import load_settings\nfrom bot.logs import setup_logging\n"
              "from bot.discord_app import run_bot\n"
              "s = load_settings(); setup_logging(s.log_level, s.env)\nsys.exit(run_bot(App(s)))\n")
    env = clean_env(tmp_path / "data", DISCORD_TOKEN="test-token", STUDYBOT_PROVIDERS="offline",
                    FAKE_DISCORD=server_url, GATEWAY_PATH=GATEWAY_PATH)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await api.wait_for(lambda: any(r.path.startswith(GATEWAY_PATH) for r in api.calls), limit_s=120)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    text = err.decode()
    assert proc.returncode == 0, text
    assert "health: ready=False" in text and "shutting down" in text
    assert api.find("PUT", rf"/applications/{APP_ID}/commands")  # the first start synced globally


async def test_owner_sync_from_a_payload(live: StudyBot, api: FakeDiscordAPI) -> None:
    from .discord_api import OWNER_ID

    live._connection.parse_interaction_create(command_payload("sync", {}, user_id=OWNER_ID))  # type: ignore[arg-type]
    await api.wait_for(lambda: bool(followups(api)))
    assert callbacks(api)[0]["data"]["flags"] == EPHEMERAL
    assert api.find("PUT", rf"/applications/{APP_ID}/commands")
    assert "synced" in followups(api)[-1]["content"]
    live._connection.parse_interaction_create(command_payload("sync", {}, user_id=99))  # type: ignore[arg-type]
    await api.wait_for(lambda: len(followups(api)) == 2)
    assert "owner" in str(followups(api)[-1]["embeds"]) and len(api.find("PUT", rf"/applications/{APP_ID}/commands")) == 1
