"""The Discord adapter: the only package of studybot that imports `discord`.

    build_bot(app) -> StudyBot             the bot, not connected
    check_json(app) -> dict                `studybot run --check --json`: commands, intents, mentions
    run_bot(app) -> int                    `studybot run`: until SIGTERM/SIGINT, reconnecting
    digest_sender(app)                     async context: a `jobs.digest.Send` over REST only
                                           (for `studybot digest --post`)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from .client import StudyBot

if TYPE_CHECKING:
    from bot.app import App
    from jobs.digest import Digest

log = logging.getLogger(__name__)

__all__ = ["StudyBot", "acheck_json", "arun_bot", "build_bot", "check_json", "digest_sender", "run_bot"]


def build_bot(app: App, **kw: Any) -> StudyBot:
    return StudyBot(app, **kw)


def _command_json(cmd: Any, tree: Any) -> dict[str, Any]:
    d = cmd.to_dict(tree)
    out = {"name": d["name"], "description": d.get("description", ""), "options": d.get("options", [])}
    if d.get("default_member_permissions") is not None:
        out["default_member_permissions"] = d["default_member_permissions"]
    return out


async def acheck_json(app: App) -> dict[str, Any]:
    """Build the bot without connecting and describe it (DESIGN §3)."""
    bot = build_bot(app)
    await bot.load_cogs()
    am = bot.allowed_mentions or discord.AllowedMentions.none()
    return {
        "commands": [_command_json(c, bot.tree) for c in sorted(bot.tree.get_commands(), key=lambda c: c.name)],
        "intents": dict(bot.intents),
        "allowed_mentions": {"everyone": bool(am.everyone), "roles": bool(am.roles), "users": bool(am.users),
                             "replied_user": bool(am.replied_user)},
        "persistent_buttons": [c.__discord_ui_compiled_template__.pattern  # type: ignore[attr-defined]
                               for c in _dynamic_items()],
        "dev_guild_id": app.settings.discord_dev_guild_id,
        "token_set": bool(app.settings.discord_token),
    }


def _dynamic_items() -> tuple[Any, ...]:
    from .views import DYNAMIC_ITEMS

    return DYNAMIC_ITEMS


def check_json(app: App) -> dict[str, Any]:
    """Synchronous `acheck_json` (runs in a helper thread when an event loop is already running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(acheck_json(app))
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["ok"] = asyncio.run(acheck_json(app))
        except BaseException as e:  # re-raised in the caller's thread
            box["err"] = e

    t = threading.Thread(target=work, name="studybot-check")
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]
    return box["ok"]  # type: ignore[no-any-return]


async def arun_bot(app: App, *, stop: asyncio.Event | None = None) -> int:
    """Run until `stop` is set (SIGTERM/SIGINT in `run_bot`); discord.py reconnects by itself."""
    token = app.settings.discord_token
    if not token:
        log.error("DISCORD_TOKEN is not set")
        return 2
    stop = stop or asyncio.Event()
    bot = build_bot(app)
    code = 0
    async with bot:
        runner = asyncio.create_task(bot.start(token, reconnect=True), name="studybot-gateway")
        waiter = asyncio.create_task(stop.wait(), name="studybot-stop")
        done, _ = await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            exc = runner.exception()
            if isinstance(exc, discord.LoginFailure):
                log.error("Discord refused the token (DISCORD_TOKEN): %s", exc)
                code = 2
            elif isinstance(exc, discord.PrivilegedIntentsRequired):
                log.error("DISCORD_MESSAGE_CONTENT is on but the Message Content intent is not enabled in the "
                          "Discord developer portal: enable it there or unset DISCORD_MESSAGE_CONTENT")
                code = 2
            elif exc is not None:
                log.error("the bot stopped: %s", exc, exc_info=exc)
                code = 1
        else:
            log.warning("shutting down (signal)")
        waiter.cancel()
        await bot.close()  # finishes streams' final edits, stops the scheduler, closes the gateway
        if not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
    return code


def run_bot(app: App) -> int:
    """`studybot run`: the bot until SIGTERM or Ctrl-C; the exit code says why it stopped."""
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        try:
            return await arun_bot(app, stop=stop)
        finally:
            await app.aclose()

    return asyncio.run(main())


@contextlib.asynccontextmanager
async def digest_sender(app: App) -> AsyncIterator[Callable[[str, Digest], Awaitable[None]]]:
    """A `jobs.digest.Send` for one-off posting (`studybot digest --post`): logs in over REST,
    no gateway, and posts the digest embeds to a channel id."""
    from ..render import digest_embeds, pack_embeds
    from .common import NO_MENTIONS, to_embed

    client = discord.Client(intents=discord.Intents.none(), allowed_mentions=discord.AllowedMentions.none())
    await client.login(app.settings.discord_token or "")

    async def send(channel_id: str, digest: Digest) -> None:
        channel = client.get_partial_messageable(int(channel_id))
        for group in pack_embeds(digest_embeds(digest.as_dict())):
            await channel.send(embeds=[to_embed(e) for e in group], allowed_mentions=NO_MENTIONS)

    try:
        yield send
    finally:
        await client.close()
