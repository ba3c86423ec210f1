"""Split documents into retrievable chunks that respect headings, paragraphs, code blocks
and Chinese sentence ends. Each chunk remembers its file, heading path and line range.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_CHARS = 700  # a chunk's soft limit: about one screen, a few paragraphs
MIN_CHARS = 80
EMBED_CHARS = 320

_HEADING = re.compile(r"^(#{1,4})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENT_END = re.compile(r"(?<=[。！？!?；;])|(?<=\.)\s+")
_JSX_LINE = re.compile(r"^\s*(import\s.+from\s.+|export\s.+|<\/?[A-Z][\w.]*[^>]*\/?>\s*)$")
_JSX_INLINE = re.compile(r"<\/?[A-Z][\w.]*(?:\s[^<>]*)?\/?>")


@dataclass(slots=True)
class Chunk:
    path: str  # as shown to users: "knowledge/sft_peft.md" or a user file path
    title: str  # document title
    heading: str  # nearest heading ("" before the first)
    heading_path: list[str]
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str
    topic: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def section(self) -> str:
        return " › ".join(self.heading_path[1:] if len(self.heading_path) > 1 else self.heading_path)

    def embed_text(self) -> str:
        """Text given to the embedder: the heading path for context, then the lead of the chunk
        (the bundled model costs about a millisecond per token, and the lead names the topic)."""
        return f"{' > '.join(self.heading_path)}\n{self.text[:EMBED_CHARS]}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_front_matter(text: str) -> tuple[dict[str, Any], str, int]:
    """(front matter, body, number of lines the front matter took)."""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end > 0:
            raw = text[3:end]
            try:
                meta = yaml.safe_load(raw) or {}
            except yaml.YAMLError:
                meta = {}
            after = text.find("\n", end + 4)
            body = text[after + 1:] if after > 0 else ""
            return (meta if isinstance(meta, dict) else {}), body, text[: after + 1].count("\n") if after > 0 else 0
    return {}, text, 0


def clean_mdx(text: str) -> str:
    """Drop JSX components and MDX import lines, keep prose and code."""
    out = []
    for line in text.split("\n"):
        if _JSX_LINE.match(line):
            out.append("")  # keep line numbers stable
        else:
            out.append(_JSX_INLINE.sub("", line))
    return "\n".join(out)


def html_to_markdown(html: str) -> str:
    """Headings become Markdown headings; paragraphs, list items and code become lines."""
    from selectolax.parser import HTMLParser

    tree = HTMLParser(html)
    for tag in ("script", "style", "nav", "footer", "header", "noscript"):
        for node in tree.css(tag):
            node.decompose()
    lines: list[str] = []
    body = tree.body or tree.root
    if body is None:
        return ""
    for node in body.traverse(include_text=False):
        tag = node.tag
        if tag in ("h1", "h2", "h3", "h4"):
            lines += ["", "#" * int(tag[1]) + " " + node.text(strip=True), ""]
        elif tag in ("p", "li", "blockquote", "td"):
            t = node.text(separator=" ", strip=True)
            if t:
                lines += [t, ""]
        elif tag == "pre":
            lines += ["```", node.text(), "```", ""]
    return "\n".join(lines)


def _title_of(meta: dict[str, Any], body: str, fallback: str) -> str:
    if meta.get("title"):
        return str(meta["title"])
    for line in body.split("\n"):
        m = _HEADING.match(line)
        if m and len(m.group(1)) == 1:
            return m.group(2).strip()
    return fallback


def _split_long(text: str, limit: int) -> list[str]:
    """Split a long paragraph at sentence ends (Chinese and English) into pieces under `limit`."""
    if len(text) <= limit:
        return [text]
    sentences = [s for s in _SENT_END.split(text) if s]
    out, cur = [], ""
    for s in sentences:
        if cur and len(cur) + len(s) > limit:
            out.append(cur)
            cur = ""
        while len(s) > limit:  # a "sentence" with no end at all
            out.append(s[:limit])
            s = s[limit:]
        cur += s
    if cur:
        out.append(cur)
    return out


def _blocks(lines: list[str], first_line: int) -> list[tuple[int, int, str, bool]]:
    """Paragraphs and fenced code blocks: (start, end, text, is_code). Lines are 1-based."""
    blocks: list[tuple[int, int, str, bool]] = []
    buf: list[str] = []
    start = 0
    in_code = False
    for i, line in enumerate(lines):
        ln = first_line + i
        if _FENCE.match(line):
            if in_code:
                buf.append(line)
                blocks.append((start, ln, "\n".join(buf), True))
                buf, in_code = [], False
                continue
            if buf:
                blocks.append((start, ln - 1, "\n".join(buf), False))
            buf, start, in_code = [line], ln, True
            continue
        if in_code:
            buf.append(line)
            continue
        if not line.strip():
            if buf:
                blocks.append((start, ln - 1, "\n".join(buf), False))
                buf = []
            continue
        if not buf:
            start = ln
        buf.append(line)
    if buf:
        blocks.append((start, first_line + len(lines) - 1, "\n".join(buf), in_code))
    return blocks


def chunk_markdown(text: str, path: str, *, max_chars: int = MAX_CHARS) -> list[Chunk]:
    meta, body, offset = split_front_matter(text)
    if path.endswith(".mdx"):
        body = clean_mdx(body)
    title = _title_of(meta, body, Path(path).stem)
    topic = str(meta.get("topic", ""))
    lines = body.split("\n")
    # sections: (heading path, first content line index, end index)
    sections: list[tuple[list[str], int, int]] = []
    stack: list[tuple[int, str]] = []
    cur_start = 0
    cur_path: list[str] = [title]
    in_code = False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            in_code = not in_code
        m = None if in_code else _HEADING.match(line)
        if m:
            sections.append((cur_path, cur_start, i))
            level = len(m.group(1))
            stack = [(lv, h) for lv, h in stack if lv < level] + [(level, m.group(2).strip())]
            heads = [h for _, h in stack]
            cur_path = heads if heads and heads[0] == title else [title, *[h for lv, h in stack if lv > 1]]
            cur_start = i + 1
    sections.append((cur_path, cur_start, len(lines)))

    chunks: list[Chunk] = []
    for heading_path, s, e in sections:
        blocks = _blocks(lines[s:e], offset + s + 1)
        if not blocks:
            continue
        heading = heading_path[-1] if len(heading_path) > 1 else ""
        pending: list[tuple[int, int, str]] = []

        def flush(heading_path: list[str] = heading_path, heading: str = heading) -> None:
            if pending:
                chunks.append(Chunk(path, title, heading, list(heading_path), pending[0][0], pending[-1][1],
                                    "\n\n".join(p[2] for p in pending).strip(), topic))
                pending.clear()

        size = 0
        for b_start, b_end, b_text, is_code in blocks:
            pieces = [b_text] if is_code else _split_long(b_text, max_chars)
            for piece in pieces:
                if pending and size + len(piece) > max_chars and size >= MIN_CHARS:
                    flush()
                    size = 0
                pending.append((b_start, b_end, piece))
                size += len(piece)
        flush()
    return [c for c in chunks if c.text.strip()]


def chunk_file(path: Path, display_path: str) -> list[Chunk]:
    raw = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        return chunk_markdown(html_to_markdown(raw), display_path)
    return chunk_markdown(raw, display_path)


SUPPORTED_SUFFIXES = {".md", ".mdx", ".markdown", ".txt", ".html", ".htm"}
