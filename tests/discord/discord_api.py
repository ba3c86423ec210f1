"""A loopback stand-in for Discord's REST API (the far side of the Discord boundary).

discord.py runs unchanged (its HTTP client, its webhook adapter, its payload building) with
`Route.BASE` pointed here; this server records each request and answers with minimal valid
payloads, so tests read exactly what would have gone to Discord. No gateway: interactions are
fed to the client as the raw INTERACTION_CREATE payloads the gateway would deliver.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from typing import Any

from tests.stubs.http_server import Reply, Request

APP_ID = 2000
BOT_ID = 1000
OWNER_ID = 7
TS = "2026-01-01T00:00:00+00:00"
GATEWAY_PATH = "/gateway-ws"  # point discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY here

BOT_USER = {"id": str(BOT_ID), "username": "studybot", "discriminator": "0", "avatar": None, "bot": True,
            "global_name": None, "flags": 0, "mfa_enabled": False, "verified": True}
APP_INFO = {"id": str(APP_ID), "name": "studybot", "description": "", "icon": None, "bot_public": True,
            "bot_require_code_grant": False, "verify_key": "00", "flags": 0,
            "owner": {"id": str(OWNER_ID), "username": "owner", "discriminator": "0", "avatar": None}}


class FakeDiscordAPI:
    def __init__(self) -> None:
        self.calls: list[Request] = []
        self.bad_tokens: set[str] = set()
        self._ids = itertools.count(5_000_000)
        self._event = asyncio.Event()

    # -- inspection --------------------------------------------------------------------------------

    def find(self, method: str, pattern: str) -> list[Request]:
        rx = re.compile(pattern)
        return [r for r in self.calls if r.method == method and rx.fullmatch(self.path(r))]

    @staticmethod
    def path(req: Request) -> str:
        return req.path.removeprefix("/api/v10")

    async def wait_for(self, done: Callable[[], bool], limit_s: float = 30.0) -> None:
        """Wait until `done()` holds (checked after each request reaches the server)."""
        async with asyncio.timeout(limit_s):
            while not done():
                self._event.clear()
                await self._event.wait()

    # -- the API ---------------------------------------------------------------------------------------

    def message(self, body: dict[str, Any], channel_id: int | str = 0) -> dict[str, Any]:
        return {"id": str(next(self._ids)), "channel_id": str(channel_id), "author": BOT_USER,
                "content": body.get("content") or "", "timestamp": TS, "edited_timestamp": None, "tts": False,
                "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
                "embeds": body.get("embeds") or [], "pinned": False, "type": 0, "flags": body.get("flags") or 0,
                "components": body.get("components") or []}

    def __call__(self, req: Request) -> Reply:
        self.calls.append(req)
        self._event.set()
        p, m = self.path(req), req.method
        if req.headers.get("authorization", "").removeprefix("Bot ") in self.bad_tokens:
            return Reply.json({"message": "401: Unauthorized", "code": 0}, 401)
        if m == "GET" and p.startswith(GATEWAY_PATH):  # the websocket handshake: hang (no gateway in tests)
            return Reply(101, first_delay=120)
        if m == "GET" and p == "/users/@me":
            return Reply.json(BOT_USER)
        if m == "GET" and p == "/oauth2/applications/@me":
            return Reply.json(APP_INFO)
        if m == "PUT" and re.fullmatch(rf"/applications/{APP_ID}(/guilds/\d+)?/commands", p):
            return Reply.json([{**c, "id": str(3000 + i), "application_id": str(APP_ID), "version": "1",
                                "default_member_permissions": c.get("default_member_permissions")}
                               for i, c in enumerate(req.json())])
        if m == "POST" and re.fullmatch(r"/interactions/\d+/[^/]+/callback", p):
            return Reply.json({"interaction": {"id": p.split("/")[2], "type": 2}})
        if m == "POST" and re.fullmatch(r"/webhooks/\d+/[^/]+", p):
            return Reply.json(self.message(req.json()))
        if m == "PATCH" and re.fullmatch(r"/webhooks/\d+/[^/]+/messages/[^/]+", p):
            return Reply.json(self.message(req.json()))
        if m == "POST" and (mm := re.fullmatch(r"/channels/(\d+)/messages", p)):
            return Reply.json(self.message(req.json(), mm.group(1)))
        if m == "PATCH" and (mm := re.fullmatch(r"/channels/(\d+)/messages/\d+", p)):
            return Reply.json(self.message(req.json(), mm.group(1)))
        return Reply.json({"message": "404: Not Found", "code": 0}, 404)


def member(user_id: int, *, permissions: int = 0, name: str = "alice") -> dict[str, Any]:
    return {"user": {"id": str(user_id), "username": name, "discriminator": "0", "avatar": None, "global_name": name},
            "roles": [], "joined_at": TS, "deaf": False, "mute": False, "flags": 0, "pending": False,
            "permissions": str(permissions), "nick": None, "avatar": None, "premium_since": None,
            "communication_disabled_until": None}


def _base(kind: int, *, guild_id: int, channel_id: int, user_id: int, permissions: int) -> dict[str, Any]:
    return {"id": str(next(_interaction_ids)), "application_id": str(APP_ID), "type": kind,
            "token": f"tok-{next(_interaction_ids)}", "version": 1, "guild_id": str(guild_id),
            "channel_id": str(channel_id),
            "channel": {"id": str(channel_id), "type": 0, "guild_id": str(guild_id), "name": "study", "position": 0,
                        "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
                        "rate_limit_per_user": 0},
            "member": member(user_id, permissions=permissions), "app_permissions": str((1 << 40) - 1),
            "locale": "zh-CN", "guild_locale": "zh-CN", "entitlements": [], "authorizing_integration_owners": {},
            "context": 0, "attachment_size_limit": 8 * 1024 * 1024}


_interaction_ids = itertools.count(800_000_000_000_000_000)


def command_payload(name: str, options: dict[str, Any] | None = None, *, sub: str | None = None,
                    guild_id: int = 11, channel_id: int = 22, user_id: int = 33, permissions: int = 0,
                    focused: str | None = None) -> dict[str, Any]:
    """INTERACTION_CREATE for a slash command (type 2), or its autocomplete (type 4, `focused`)."""
    types = {str: 3, int: 4, bool: 5}
    opts = [{"name": k, "type": types[type(v)], "value": v, **({"focused": True} if k == focused else {})}
            for k, v in (options or {}).items()]
    if sub:
        opts = [{"name": sub, "type": 1, "options": opts}]
    d = _base(4 if focused else 2, guild_id=guild_id, channel_id=channel_id, user_id=user_id,
              permissions=permissions)
    d["data"] = {"id": "3000", "name": name, "type": 1, "options": opts}
    return d


def component_payload(custom_id: str, message: dict[str, Any], *, guild_id: int = 11, channel_id: int = 22,
                      user_id: int = 33) -> dict[str, Any]:
    """INTERACTION_CREATE for a button click (type 3) on `message`."""
    d = _base(3, guild_id=guild_id, channel_id=channel_id, user_id=user_id, permissions=0)
    d["data"] = {"custom_id": custom_id, "component_type": 2}
    d["message"] = message
    return d
