"""Pure text safety and layout helpers shared by every adapter (no discord import).

LLM output and scraped text are untrusted: mentions are defused, invite and masked links
neutralised, runaway repetition cut.
"""

from __future__ import annotations

import re

ZWSP = "\u200b"
_MENTION_WORD = re.compile(r"@(everyone|here)", re.I)
_MENTION_ID = re.compile(r"<(@[!&]?|#)(\d{5,25})>")
_INVITE = re.compile(r"(?i)\b(?:https?://)?(?:www\.)?(discord(?:app)?\.(?:gg|com/invite|io|me|li)|dsc\.gg)/[\w-]+")
_MASKED = re.compile(r"\[([^\]\n]{1,200})\]\(\s*<?(https?://[^)\s>]+)>?\s*\)")
_REPEAT = re.compile(r"(.)\1{29,}", re.S)
_REPEAT_UNIT = re.compile(r"(.{2,12}?)\1{9,}", re.S)


def scrub(text: str) -> str:
    """Make untrusted text safe to show: no pings, no invites, no masked links, no floods."""
    if not text:
        return ""
    text = _MENTION_WORD.sub(lambda m: "@" + ZWSP + m.group(1), text)
    text = _MENTION_ID.sub(lambda m: f"<{m.group(1)}{ZWSP}{m.group(2)}>", text)
    text = _INVITE.sub("[邀请链接已移除 / invite removed]", text)
    text = _MASKED.sub(lambda m: f"{m.group(1)} ({m.group(2)})", text)
    text = _REPEAT.sub(lambda m: m.group(1) * 5 + "…", text)
    text = _REPEAT_UNIT.sub(lambda m: m.group(1) * 3 + "…", text)
    return text


def has_ping(text: str) -> bool:
    return bool(_MENTION_WORD.search(text) or _MENTION_ID.search(text))
