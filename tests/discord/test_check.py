"""`studybot run --check --json` (check_json), command definitions within Discord's rules, and
the import boundary: only bot/discord_app imports discord."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bot.app import App
from bot.config import load_settings
from bot.discord_app import acheck_json, check_json

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "ask": [], "chat": [], "model": [], "compare": [], "summarize": [], "classify": [],
    "digest": ["now", "subscribe", "unsubscribe", "time"], "quiz": ["start", "review", "stats", "leaderboard"],
    "stats": [], "help": [], "kb": ["add"], "forget": [], "export": [], "sync": [],
    "config": ["persona", "allow", "deny", "channels", "dms"], "roadmap": [], "plan": [], "progress": [],
}
ADMIN_ONLY = {"digest", "kb", "config"}
_NAME = re.compile(r"^[-_\w]{1,32}$")


async def test_check_json_lists_every_command_and_turns_mentions_off() -> None:
    doc = await acheck_json(App(load_settings()))
    names = {c["name"]: c for c in doc["commands"]}
    assert set(names) == set(EXPECTED)
    for name, subs in EXPECTED.items():
        got = [o["name"] for o in names[name]["options"] if o["type"] == 1]
        assert got == subs, (name, got)
    assert doc["allowed_mentions"] == {"everyone": False, "roles": False, "users": False, "replied_user": False}
    enabled = {k for k, v in doc["intents"].items() if v}
    assert enabled == {"guilds", "guild_messages", "dm_messages"}  # minimal; no privileged intent
    assert {n for n, c in names.items() if c.get("default_member_permissions")} == ADMIN_ONLY
    assert any("quiz:" in p for p in doc["persistent_buttons"])
    assert doc["token_set"] is False  # built without a token and without connecting


def test_help_mentions_every_command_a_member_can_use() -> None:
    from bot.discord_app.cogs.admin import HELP

    text = " ".join(f"{name} {value}" for name, value in HELP)
    missing = [c for c in EXPECTED if c not in {"help", "sync", "config"} and f"/{c}" not in text]
    assert missing == []


def test_check_json_is_json_and_follows_the_message_content_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("DISCORD_MESSAGE_CONTENT", "true")
    doc = check_json(App(load_settings()))
    assert doc["intents"]["message_content"] is True
    json.dumps(doc)


async def test_check_json_works_inside_a_running_loop() -> None:
    doc = check_json(App(load_settings()))  # a helper thread runs it
    assert len(doc["commands"]) == len(EXPECTED)


async def test_names_and_descriptions_fit_discord() -> None:
    doc = await acheck_json(App(load_settings()))

    def walk(opts: list[dict], where: str) -> None:  # type: ignore[type-arg]
        assert len(opts) <= 25, where
        for o in opts:
            assert _NAME.match(o["name"]) and o["name"] == o["name"].lower(), (where, o["name"])
            assert 1 <= len(o["description"]) <= 100, (where, o["name"], len(o["description"]))
            for ch in o.get("choices") or []:
                assert 1 <= len(ch["name"]) <= 100
            walk(o.get("options") or [], f"{where} {o['name']}")

    for c in doc["commands"]:
        assert _NAME.match(c["name"]) and 1 <= len(c["description"]) <= 100, c["name"]
        walk(c["options"], c["name"])


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
    return mods


def test_only_the_discord_adapter_imports_discord() -> None:
    adapter = ROOT / "bot" / "discord_app"
    offenders = []
    checked = 0
    for pkg in ("bot", "providers", "jobs"):
        for path in (ROOT / pkg).rglob("*.py"):
            if adapter in path.parents:
                continue
            checked += 1
            if any(m == "discord" or m.startswith("discord.") for m in _imports(path)):
                offenders.append(str(path.relative_to(ROOT)))
            text = path.read_text(encoding="utf-8")
            if re.search(r"""(__import__|import_module)\(\s*['"]discord""", text):
                offenders.append(str(path.relative_to(ROOT)) + " (dynamic)")
    assert checked > 50
    assert offenders == []
    # and the adapter itself does import it (the test would pass vacuously otherwise)
    assert "discord" in _imports(adapter / "client.py")


def test_render_stays_discord_free_at_runtime() -> None:
    import subprocess
    import sys

    code = ("import sys, bot.render, bot.assistant, bot.quiz.session, jobs.digest; "
            "print(any(m == 'discord' or m.startswith('discord.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "False", out.stderr

