"""Pure text safety and layout helpers shared by every adapter (no discord import).

LLM output and scraped text are untrusted: mentions are defused, invite and masked links
neutralised, runaway repetition cut.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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


# ---- reasoning ---------------------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"<think>.*?</think>\s*", re.S | re.I)
_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>\s*", re.I)


def hide_reasoning(text: str) -> str:
    """The answer without `<think>` reasoning: closed blocks removed, an unclosed block (still
    streaming) cut off, and text before a stray `</think>` (models whose template opens the block
    in the prompt) dropped. Providers split reasoning out already; this is the adapter's safety net."""
    if not text or "think>" not in text.lower():
        return text or ""
    text = _THINK_BLOCK.sub("", text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    opened = _THINK_OPEN.search(text)
    if opened is not None:
        text = text[: opened.start()]
    return text


# ---- splitting long text -----------------------------------------------------------------------

MESSAGE_LIMIT = 2000  # Discord message content
FENCE = "```"
_CLOSE = "\n" + FENCE
_LANG = re.compile(r"[\w+#.\-]{1,20}")
_MAX_FENCE_LINE = 40  # a longer opening line is reduced to ``` + its language


def _fence_lines(text: str) -> list[str]:
    """Lines of `text`, with every ``` moved to the start of its own line (Discord opens a code
    block at any ```, not only at a line start): each line then holds at most one fence."""
    out: list[str] = []
    for line in text.split("\n"):
        if FENCE not in line or (line.lstrip().startswith(FENCE) and line.count(FENCE) == 1):
            out.append(line)
            continue
        starts = [m.start() for m in re.finditer(FENCE, line)]
        head = line[: starts[0]]
        if head.strip():
            out.append(head.rstrip())
        elif head:
            starts[0] = 0  # keep the indentation of a fence that opens the line
        for a, b in zip(starts, [*starts[1:], len(line)], strict=True):
            out.append(line[a:b])
    return out


def _header(line: str) -> str:
    """The opening fence to repeat when a code block continues in the next part."""
    m = _LANG.match(line.strip()[len(FENCE):].lstrip("`").strip())
    return FENCE + (m.group(0) if m else "")


def _cut_point(line: str, avail: int) -> int:
    """Where to cut a line longer than `avail`: the last space in the second half, else hard."""
    space = line.rfind(" ", avail // 2, avail)
    return space + 1 if space > 0 else avail


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split text into parts of at most `limit` characters, preferring line breaks, never
    leaving a code block open: a block cut in two is closed at the end of one part and
    reopened (with its language) at the start of the next. Blank parts are dropped."""
    if limit < 64:
        raise ValueError("limit must be at least 64 characters")
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return []
    parts: list[str] = []
    buf: list[str] = []
    size = 0
    fence: str | None = None  # the reopening header while inside a code block
    open_at = -1  # index in buf of the line that opened the current block
    body = False  # buf holds more than a reopened header

    def add(line: str, *, content: bool = True) -> None:
        nonlocal size, body
        size += len(line) + (1 if buf else 0)
        buf.append(line)
        body = body or content

    def emit(close: bool) -> None:
        nonlocal buf, size, body, open_at
        if close and open_at == len(buf) - 1 and open_at >= 0:
            buf.pop()  # a block opened on the very last line: open it in the next part instead
            close = False
            if not any(s.strip() for s in buf):
                buf = []
        if body and buf:
            parts.append("\n".join(buf) + (_CLOSE if close else ""))
        buf, size, body, open_at = [], 0, False, -1

    def flush() -> None:
        nonlocal open_at
        emit(fence is not None)
        if fence is not None:
            add(fence, content=False)
            open_at = -2  # reopened: not a dangling opening line

    for line in _fence_lines(text):
        if line.lstrip().startswith(FENCE):
            opening = fence is None
            if opening and len(line) > _MAX_FENCE_LINE:
                line = _header(line)
            elif not opening and len(line) > _MAX_FENCE_LINE:
                line = FENCE
            reserve = len(_CLOSE) if opening else 0
            if len(line) + (1 if buf else 0) + reserve > limit - size:
                if not opening:  # no room for the closing line: the part's own close ends the block
                    emit(True)
                    fence = None
                    continue
                flush()
            add(line)
            if opening:
                fence, open_at = _header(line), len(buf) - 1
            else:
                fence, open_at = None, -1
            continue
        reserve = len(_CLOSE) if fence is not None else 0
        while True:
            avail = limit - size - (1 if buf else 0) - reserve
            if len(line) <= avail:
                add(line)
                break
            if body:
                flush()
                continue
            cut = _cut_point(line, avail)
            add(line[:cut])
            flush()
            line = line[cut:]
    emit(fence is not None)
    return [p for p in parts if p.strip()]


def fences_balanced(part: str) -> bool:
    """Every code block opened in `part` is closed in it (an even number of ```)."""
    return part.count(FENCE) % 2 == 0


def clip(text: str, limit: int, ellipsis: str = "…") -> str:
    text = text or ""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ellipsis))] + ellipsis


# ---- embeds within Discord's limits ------------------------------------------------------------

EMBED_TITLE = 256
EMBED_DESCRIPTION = 4096
EMBED_FIELDS = 25
EMBED_FIELD_NAME = 256
EMBED_FIELD_VALUE = 1024
EMBED_FOOTER = 2048
EMBED_AUTHOR = 256
EMBED_TOTAL = 6000  # per message, over all its embeds
EMBEDS_PER_MESSAGE = 10
BLANK = "\u200b"  # Discord rejects empty field names and values

COLOR_INFO = 0x5865F2
COLOR_OK = 0x2ECC71
COLOR_WARN = 0xF1C40F
COLOR_ERROR = 0xE74C3C


@dataclass
class EmbedField:
    name: str
    value: str
    inline: bool = False


@dataclass
class EmbedSpec:
    """A Discord embed as plain data; the adapter turns `to_dict()` into `discord.Embed`."""

    title: str = ""
    description: str = ""
    fields: list[EmbedField] = field(default_factory=list)
    footer: str = ""
    author: str = ""
    url: str | None = None
    color: int | None = COLOR_INFO

    def add(self, name: str, value: str, inline: bool = False) -> EmbedSpec:
        self.fields.append(EmbedField(name, value, inline))
        return self

    def total(self) -> int:
        """Characters Discord counts towards the 6000 limit."""
        return (len(self.title) + len(self.description) + len(self.footer) + len(self.author)
                + sum(len(f.name) + len(f.value) for f in self.fields))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "rich"}
        if self.title:
            d["title"] = self.title
        if self.description:
            d["description"] = self.description
        if self.url:
            d["url"] = self.url
        if self.color is not None:
            d["color"] = self.color
        if self.fields:
            d["fields"] = [{"name": f.name, "value": f.value, "inline": f.inline} for f in self.fields]
        if self.footer:
            d["footer"] = {"text": self.footer}
        if self.author:
            d["author"] = {"name": self.author}
        return d


def fit_embed(spec: EmbedSpec) -> EmbedSpec:
    """A copy of `spec` clipped to every per-embed limit and to the 6000-character total
    (the description shrinks first, then trailing fields go, with a note that some were left out)."""
    fields = [EmbedField(clip(f.name.strip() or BLANK, EMBED_FIELD_NAME), clip(f.value.strip() or BLANK,
                                                                              EMBED_FIELD_VALUE), f.inline)
              for f in spec.fields]
    dropped = max(0, len(fields) - EMBED_FIELDS)
    fields = fields[:EMBED_FIELDS]
    out = EmbedSpec(clip(spec.title, EMBED_TITLE), clip(spec.description, EMBED_DESCRIPTION), fields,
                    clip(spec.footer, EMBED_FOOTER), clip(spec.author, EMBED_AUTHOR), spec.url, spec.color)
    over = out.total() - EMBED_TOTAL
    if over > 0 and out.description:
        out.description = clip(out.description, max(1, len(out.description) - over))
        over = out.total() - EMBED_TOTAL
    while over > 0 and out.fields:
        out.fields.pop()
        dropped += 1
        over = out.total() - EMBED_TOTAL
    if dropped:
        note = f" · 另有 {dropped} 项未显示 / {dropped} more not shown"
        out.footer = clip(out.footer + note, EMBED_FOOTER) if out.total() + len(note) <= EMBED_TOTAL else out.footer
    if out.total() > EMBED_TOTAL:  # only title/footer/author left to cut
        out.footer = clip(out.footer, max(0, len(out.footer) - (out.total() - EMBED_TOTAL)))
    return out


def pack_embeds(specs: list[EmbedSpec], per_message: int = EMBEDS_PER_MESSAGE,
                total: int = EMBED_TOTAL) -> list[list[EmbedSpec]]:
    """Group fitted embeds into messages of at most 10 embeds and 6000 characters each."""
    messages: list[list[EmbedSpec]] = []
    cur: list[EmbedSpec] = []
    used = 0
    for spec in (fit_embed(s) for s in specs):
        n = spec.total()
        if cur and (len(cur) >= per_message or used + n > total):
            messages.append(cur)
            cur, used = [], 0
        cur.append(spec)
        used += n
    if cur:
        messages.append(cur)
    return messages


def error_embed(what: str, todo: str = "", *, detail: str = "") -> EmbedSpec:
    """A short error: what went wrong and what the user can do (details go to the log)."""
    desc = what + (f"\n\n**怎么办 / what to do:** {todo}" if todo else "")
    return fit_embed(EmbedSpec(title="⚠️ 出错了 / Something went wrong", description=desc, footer=detail,
                               color=COLOR_ERROR))


# ---- the digest as embeds ------------------------------------------------------------------------

_NEWS_EMBED_CHARS = 5000  # leave room so a packed message fits other embeds


def _heat(heat: Any) -> str:
    if not isinstance(heat, int) or isinstance(heat, bool):
        return ""
    return f"{heat / 10000:.1f}万" if heat >= 10000 else str(heat)


def pack_lines(lines: list[str], limit: int = EMBED_FIELD_VALUE) -> list[str]:
    """Join lines, in order, into as few texts of at most `limit` characters as fit (a line too
    long on its own is clipped)."""
    out: list[str] = []
    cur = ""
    for line in lines:
        line = clip(line, limit)
        if cur and len(cur) + 1 + len(line) > limit:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n{line}" if cur else line
    if cur:
        out.append(cur)
    return out


def _embeds_from_fields(title: str, fields: list[EmbedField], color: int) -> list[EmbedSpec]:
    """As many embeds as the fields need (25 fields and about 5000 characters each)."""
    embeds: list[EmbedSpec] = []
    cur = EmbedSpec(title=title, color=color)
    for f in fields:
        f = EmbedField(clip(f.name, EMBED_FIELD_NAME), clip(f.value, EMBED_FIELD_VALUE), f.inline)
        if cur.fields and (len(cur.fields) >= EMBED_FIELDS or cur.total() + len(f.name) + len(f.value) > _NEWS_EMBED_CHARS):
            embeds.append(cur)
            cur = EmbedSpec(title=clip(f"{title}（续 / cont.）", EMBED_TITLE), color=color)
        cur.fields.append(f)
    if cur.fields:
        embeds.append(cur)
    return embeds


def digest_embeds(d: Mapping[str, Any]) -> list[EmbedSpec]:
    """The digest (the dict of `jobs.digest.Digest.as_dict()`) as embeds within Discord's limits;
    send them grouped by `pack_embeds`. Every text is scrubbed (it comes from the web or a model)."""
    def s(v: Any) -> str:
        return scrub(str(v or "")).strip()

    date = s(d.get("date"))
    embeds = [EmbedSpec(title=clip(f"📰 每日简报 / Daily digest · {date}", EMBED_TITLE),
                        description=clip(s(d.get("overview")) or "（今日无概览 / no overview today）",
                                         EMBED_DESCRIPTION), color=COLOR_INFO)]
    news = [n for n in d.get("news") or [] if isinstance(n, Mapping)]
    if news:
        fields = []
        for n in news:
            title, summary, url, page = s(n.get("title")), s(n.get("summary")), s(n.get("url")), s(n.get("page"))
            name = clip((f"[{page}] " if page else "") + (title or "（无标题 / untitled）"), EMBED_FIELD_NAME)
            body = summary if summary and summary != title else ""
            link = url if url.startswith(("http://", "https://")) and len(url) <= 500 else ""
            room = EMBED_FIELD_VALUE - (len(link) + 1 if link else 0)
            value = "\n".join(x for x in (clip(body, room), link) if x) or BLANK
            fields.append(EmbedField(name, value))
        embeds += _embeds_from_fields(f"人民日报 / People's Daily · {len(news)}", fields, COLOR_INFO)
    topics = [t for t in d.get("hot_topics") or [] if isinstance(t, Mapping)]
    if topics:
        groups: dict[str, list[str]] = {}
        for t in sorted(topics, key=lambda t: t.get("rank") if isinstance(t.get("rank"), int) else 10**6):
            heat = _heat(t.get("heat"))
            extra = " · ".join(x for x in (heat and f"热度 {heat}", s(t.get("sublabel"))) if x)
            rank = t.get("rank") if isinstance(t.get("rank"), int) else "-"
            line = f"`{rank}` {s(t.get('word'))}" + (f" · {extra}" if extra else "")
            groups.setdefault(s(t.get("label")) or "其他 / other", []).append(line)
        fields = [EmbedField(clip(label if i == 0 else f"{label}（续）", EMBED_FIELD_NAME), value, True)
                  for label, lines in groups.items() for i, value in enumerate(pack_lines(lines))]
        embeds += _embeds_from_fields(f"🔥 微博热搜 / Weibo hot search · {len(topics)}", fields, COLOR_WARN)
    errors = [e for e in d.get("errors") or [] if isinstance(e, Mapping)]
    notes = [s(n) for n in d.get("notes") or [] if s(n)]
    if errors or notes:
        lines = [f"• [{s(e.get('source'))}] {s(e.get('error'))}" for e in errors] + [f"• {n}" for n in notes]
        embeds.append(EmbedSpec(title="说明 / Notes", description=clip("\n".join(lines), EMBED_DESCRIPTION),
                                color=COLOR_ERROR if errors else COLOR_INFO))
    return [fit_embed(e) for e in embeds]
