"""Split documents into retrievable chunks that respect headings, paragraphs, code blocks
and Chinese sentence ends. Each chunk remembers its file, heading path and line range.
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_CHARS = 700  # a chunk's soft limit: about one screen, a few paragraphs
MIN_CHARS = 80
EMBED_CHARS = 320

_HEADING = re.compile(r"^(#{1,4})\s+(.+?)(?:\s+#+)?\s*$")
_ANCHOR = re.compile(r"\s*\[\[[^\]]*\]\]\s*$")  # "# 总结 [[总结]]": the HF course's anchor ids
_FENCE = re.compile(r"^\s*(```|~~~)")
# split after a Chinese sentence end, or after English . ! ? ; followed by a space (kept)
_SENT_END = re.compile(r"(?<=[。！？；])(?![”’」』）)])|(?<=[.!?;][\s])")
_MDX_IMPORT = re.compile(r"^\s*(import\s.+\sfrom\s.+|export\s.+)\s*$")
_SVELTE_BLOCK = re.compile(r"^(\s*(?:>\s*)*)\{[#:/][^}]*\}\s*$")  # {#if fw === 'pt'} {:else} {/if}, also quoted
_JSX_OPEN = re.compile(r"`?<([A-Z][\w.]*)(?=[\s/>])")
_JSX_CLOSE = re.compile(r"`?</[A-Z][\w.]*\s*>`?")
_PROSE_PROP = re.compile(r"\b(text|explain)\s*:\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
# presentational HTML that Markdown files carry (README banners, images); kept text, dropped tags
_HTML_TAG = re.compile(r"</?(?:a|img|div|p|br|span|details|summary|center|iframe|sup|sub|picture|source|video|hr|"
                       r"b|i|em|strong|small|font|figure|figcaption|code)(?:\s[^<>]*)?/?>", re.I)


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


def _code_mask(lines: list[str]) -> list[bool]:
    """True for the lines of fenced code blocks (fences included)."""
    mask, in_code = [], False
    for line in lines:
        fence = bool(_FENCE.match(line))
        mask.append(in_code or fence)
        if fence:
            in_code = not in_code
    return mask


def _keep_lines(text: str, new: str) -> str:
    """`new` padded or folded to exactly as many lines as `text` (line numbers stay true)."""
    want = text.count("\n")
    parts = new.split("\n")
    if len(parts) > want + 1:
        parts = [*parts[:want], " ".join(parts[want:])]
    return "\n".join(parts) + "\n" * (want + 1 - len(parts))


def _strip_inline_html(line: str) -> str:
    """Drop presentational HTML tags, but not inside `inline code`."""
    segs = line.split("`")
    for i in range(0, len(segs), 2):
        segs[i] = _HTML_TAG.sub("", segs[i])
    return "`".join(segs)


def _jsx_end(text: str, i: int) -> tuple[int, bool]:
    """Index just past the JSX tag that opens at text[i] ('<'), and whether it closes itself.
    Braces and quoted strings inside the tag are skipped over; -1 when it never ends (or a blank
    line comes first: then it was prose such as "a<B", not a tag)."""
    depth, quote, j, n = 0, "", i + 1, len(text)
    while j < n:
        ch = text[j]
        if quote:
            if ch == "\\":
                j += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'`" and (depth or text[j - 1] == "="):
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        elif ch == ">" and depth == 0:
            return j + 1, text[j - 1] == "/"
        elif ch == "\n" and depth == 0:
            nxt = text.find("\n", j + 1)
            if not text[j + 1:nxt if nxt >= 0 else n].strip():  # a blank line: not a tag after all
                return -1, False
        j += 1
    return -1, False


def _prose_of(tag: str) -> str:
    """Readable text kept from a component's props: quiz choices (`text`) and their
    explanations (`explain`), one line each, e.g. MDX `<Question choices={[...]}/>`."""
    out: list[str] = []
    for m in _PROSE_PROP.finditer(tag):
        val = m.group(2)[1:-1].replace('\\"', '"').replace("\\'", "'")
        val = html.unescape(_HTML_TAG.sub("", _JSX_CLOSE.sub("", val))).replace("``", "").strip()
        if not val:
            continue
        if m.group(1) == "text":
            out.append(f"- {val}")
        elif out:
            out[-1] += f" — {val}"
        else:
            out.append(val)
    return "\n".join(out)


def _strip_jsx(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _JSX_OPEN.finditer(text):
        start = m.start()
        if start < pos:
            continue
        end, _ = _jsx_end(text, m.end(0) - len(m.group(1)) - 1)
        if end < 0:
            continue
        if end < len(text) and text[end] == "`":
            end += 1
        out.append(text[pos:start])
        out.append(_keep_lines(text[start:end], _prose_of(text[start:end])))
        pos = end
    out.append(text[pos:])
    return _JSX_CLOSE.sub("", "".join(out))


def clean_markup(text: str, *, mdx: bool = False) -> str:
    """Drop HTML comments and presentational tags (and for MDX: imports, `{#if}` blocks and JSX
    components, keeping quiz text) outside code blocks. Line numbers stay unchanged."""
    lines = text.split("\n")
    mask = _code_mask(lines)
    out: list[str] = []
    i = 0
    while i < len(lines):  # runs of prose lines are cleaned together (tags span lines)
        j = i
        while j < len(lines) and mask[j] == mask[i]:
            j += 1
        seg = "\n".join(lines[i:j])
        if not mask[i]:
            seg = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), seg)
            if mdx:
                seg = "\n".join("" if _MDX_IMPORT.match(ln) else _SVELTE_BLOCK.sub(r"\1", ln) for ln in seg.split("\n"))
                seg = _strip_jsx(seg)
            seg = "\n".join(_strip_inline_html(ln) for ln in seg.split("\n"))
        out.append(seg)
        i = j
    return "\n".join(out)


def clean_mdx(text: str) -> str:
    """Drop JSX components and MDX import lines, keep prose and code."""
    return clean_markup(text, mdx=True)


_HTML_BLOCKS = ("p", "li", "blockquote", "tr", "dt", "dd", "figcaption", "caption", "pre")
_HTML_INLINE = ("-text", "span", "a", "b", "i", "em", "strong", "code", "small", "sup", "sub", "mark", "abbr",
                "time", "label", "kbd", "q", "cite")


def _node_text(node) -> str:  # type: ignore[no-untyped-def]
    return " ".join(node.text(separator="").split())


def html_to_markdown(doc: str) -> str:
    """Headings become Markdown headings; paragraphs, list items, table cells and code become
    lines. Each block is written once (a <p> inside an <li> is not repeated), and text sitting
    directly in a <div> or <section> is kept. The page <title> is the H1 when there is none."""
    from selectolax.lexbor import LexborHTMLParser  # selectolax >= 1.0 dropped the Modest parser

    tree = LexborHTMLParser(doc)
    for tag in ("script", "style", "nav", "footer", "header", "noscript", "template", "svg"):
        for node in tree.css(tag):
            node.decompose()
    body = tree.body or tree.root
    if body is None:
        return ""
    lines: list[str] = []
    title = tree.css_first("title")
    if title is not None and title.text(strip=True) and body.css_first("h1") is None:
        lines += ["# " + title.text(strip=True), ""]

    def inside_block(node) -> bool:  # type: ignore[no-untyped-def]
        p = node.parent
        while p is not None:
            if p.tag in _HTML_BLOCKS:
                return True
            p = p.parent
        return False

    for node in body.traverse(include_text=False):
        tag = node.tag
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            t = _node_text(node)
            if t and not inside_block(node):
                lines += ["", "#" * min(int(tag[1]), 4) + " " + t, ""]
        elif tag == "pre":
            if not inside_block(node):
                lines += ["```", node.text().strip("\n"), "```", ""]
        elif tag in _HTML_BLOCKS:
            if inside_block(node):
                continue
            if tag == "tr":
                t = " | ".join(_node_text(c) for c in node.iter() if c.tag in ("td", "th"))
            else:
                t = _node_text(node)
            if t.strip(" |"):
                lines += [("- " if tag == "li" else "") + t, ""]
        elif tag in ("div", "section", "article", "main", "body"):
            # text sitting directly in a container (not in a <p>): its text and inline children
            own = " ".join((" ".join((c.text_content or "").split()) if c.tag == "-text" else _node_text(c))
                           for c in node.iter(include_text=True) if c.tag in _HTML_INLINE)
            if own.strip():
                lines += [" ".join(own.split()), ""]
    return "\n".join(lines)


def _heading_text(m: re.Match[str]) -> str:
    return _ANCHOR.sub("", m.group(2)).strip()


def _title_of(meta: dict[str, Any], body: str, fallback: str) -> str:
    if meta.get("title"):
        return str(meta["title"])
    for line in body.split("\n"):
        m = _HEADING.match(line)
        if m and len(m.group(1)) == 1:
            return _heading_text(m)
    return fallback


def _split_long(text: str, limit: int) -> list[str]:
    """Split a long paragraph at sentence ends (Chinese and English) into pieces under `limit`.
    Joined back with "" they give the paragraph again."""
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


# a piece of a block: (first line, last line, text, separator before it when joined to the previous piece)
_Piece = tuple[int, int, str, str]


def _pieces(start: int, end: int, text: str, is_code: bool, limit: int) -> list[_Piece]:
    """A block as pieces under `limit`: code whole; lists and tables at line boundaries;
    long lines at sentence ends."""
    if is_code or len(text) <= limit:
        return [(start, end, text, "\n\n")]
    out: list[_Piece] = []
    group: list[str] = []
    g_start = start

    def flush_group(sep: str) -> None:
        if group:
            out.append((g_start, g_start + len(group) - 1, "\n".join(group), sep))

    for k, line in enumerate(text.split("\n")):
        ln = start + k
        if group and (len(line) > limit or sum(map(len, group)) + len(group) + len(line) > limit):
            flush_group("\n\n" if not out else "\n")
            group = []
        if len(line) > limit:
            for n, piece in enumerate(_split_long(line, limit)):
                out.append((ln, ln, piece, ("\n\n" if not out else "\n") if n == 0 else ""))
            continue
        if not group:
            g_start = ln
        group.append(line)
    flush_group("\n\n" if not out else "\n")
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
    body = clean_markup(body, mdx=path.lower().endswith(".mdx"))
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
            stack = [(lv, h) for lv, h in stack if lv < level] + [(level, _heading_text(m))]
            heads = [h for _, h in stack]
            cur_path = heads if heads[0] == title else [title, *heads]
            cur_start = i + 1
    sections.append((cur_path, cur_start, len(lines)))

    chunks: list[Chunk] = []
    for heading_path, s, e in sections:
        heading = heading_path[-1] if len(heading_path) > 1 else ""
        pending: list[_Piece] = []
        size = 0
        for block in _blocks(lines[s:e], offset + s + 1):
            for piece in _pieces(*block, max_chars):
                if pending and size + len(piece[2]) > max_chars and size >= MIN_CHARS:
                    chunks.append(_chunk(path, title, heading, heading_path, pending, topic))
                    pending, size = [], 0
                pending.append(piece)
                size += len(piece[2])
        if pending:
            chunks.append(_chunk(path, title, heading, heading_path, pending, topic))
    return [c for c in chunks if c.text.strip()]


def _chunk(path: str, title: str, heading: str, heading_path: list[str], pieces: list[_Piece], topic: str) -> Chunk:
    text = pieces[0][2] + "".join(sep + t for _, _, t, sep in pieces[1:])
    return Chunk(path, title, heading, list(heading_path), pieces[0][0], max(p[1] for p in pieces), text.strip(), topic)


def chunk_file(path: Path, display_path: str) -> list[Chunk]:
    raw = path.read_text(encoding="utf-8", errors="replace")
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        return chunk_markdown(html_to_markdown(raw), display_path)
    return chunk_markdown(raw, display_path)


SUPPORTED_SUFFIXES = {".md", ".mdx", ".markdown", ".txt", ".html", ".htm"}
