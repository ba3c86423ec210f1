"""The knowledge index on disk: chunks, their tokens and their vectors, per scope.

Layout under `<data dir>/index/<scope>/`: immutable generations `gen-N/` (meta.json,
chunks.jsonl, vectors.npy) and a `CURRENT` file naming the live one, replaced atomically.
Builders take an exclusive file lock, so concurrent first uses build once; readers never
see a half-written index. Unchanged files (same content hash) keep their chunks and vectors;
in a changed file (or after an INDEX_VERSION bump) every chunk whose text is unchanged keeps
its vector, so only new text is embedded. Missing, corrupt or older-version indexes are rebuilt
with a message, never a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .chunk import SUPPORTED_SUFFIXES, Chunk, chunk_file, chunk_markdown
from .embed import Embedder
from .lexical import BM25, TfIdf, VocabTokenizer, bigram_tokens, word_tokens

log = logging.getLogger(__name__)

INDEX_VERSION = 6  # bump when the chunker, tokenizers or file layout change
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(slots=True)
class Document:
    path: str  # display path
    text: str
    source: Path | None = None

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{INDEX_VERSION}\0{self.path}\0{self.text}".encode()).hexdigest()[:32]


def builtin_documents() -> list[Document]:
    """The project's own notes, read through importlib.resources (works from a wheel)."""
    root = resources.files("prompts") / "knowledge"
    docs = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            docs.append(Document(f"knowledge/{entry.name}", entry.read_text(encoding="utf-8")))
    return docs


MAX_FILE_BYTES = 5_000_000  # a bigger "note" is a log or a dump: skipped with a warning
_SKIP_DIRS = {"node_modules", "__pycache__", "site-packages", "venv"}


def _wanted(f: Path, root: Path) -> bool:
    rel = f.relative_to(root).parts[:-1] if f != root else ()
    return not any(part.startswith(".") or part in _SKIP_DIRS for part in rel)


def folder_documents(paths: list[Path]) -> list[Document]:
    """Supported files under the given files/folders (hidden and dependency folders skipped)."""
    docs: list[Document] = []
    for p in paths:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and _wanted(f, p))
        for f in files:
            if f.suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            try:
                if f.stat().st_size > MAX_FILE_BYTES:
                    log.warning("skipping %s: larger than %d bytes", f, MAX_FILE_BYTES)
                    continue
                docs.append(Document(str(f.resolve()), f.read_text(encoding="utf-8", errors="replace"), f))
            except OSError as e:
                log.warning("cannot read %s: %s", f, e)
    return docs


SHIPPED_VECTORS = "_vectors.npz"


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def shipped_vectors(embedder_name: str) -> dict[str, np.ndarray]:
    """Vectors of the built-in notes computed ahead and shipped in the wheel, so the first
    question does not wait for the bundled model to embed every note (about 1 ms per token)."""
    f = resources.files("prompts") / "knowledge" / SHIPPED_VECTORS
    try:
        with f.open("rb") as fh:
            z = np.load(fh, allow_pickle=False)
            if str(z["embedder"]) != embedder_name:
                return {}
            return dict(zip((str(k) for k in z["keys"]), np.asarray(z["vectors"], dtype=np.float32), strict=True))
    except (OSError, ValueError, KeyError):
        return {}


def export_shipped_vectors(index: KnowledgeIndex, target: Path) -> int:
    """Write the vectors of the built-in chunks (`studybot kb index --export-builtin`)."""
    rows = [i for i, c in enumerate(index.chunks) if c.path.startswith("knowledge/")]
    keys = np.array([_text_key(index.chunks[i].embed_text()) for i in rows])
    np.savez_compressed(target, keys=keys, vectors=np.asarray(index.vectors[rows], dtype=np.float32),
                        embedder=np.array(index.meta.get("embedder", "")))
    return len(rows)


def _chunks_of(doc: Document) -> list[Chunk]:
    if doc.source is not None:
        return chunk_file(doc.source, doc.path)
    return chunk_markdown(doc.text, doc.path)


@dataclass
class KnowledgeIndex:
    chunks: list[Chunk]
    vectors: np.ndarray
    words: list[list[str]]
    bigrams: list[list[str]]
    meta: dict[str, Any] = field(default_factory=dict)
    _bm25: BM25 | None = None
    _tfidf: TfIdf | None = None
    workdir: Path | None = None  # where query-time helper files may be written
    _query_tk: VocabTokenizer | None = None

    @property
    def bm25(self) -> BM25:
        if self._bm25 is None:
            self._bm25 = BM25(self.words)
        return self._bm25

    @property
    def tfidf(self) -> TfIdf:
        if self._tfidf is None:
            self._tfidf = TfIdf(self.bigrams)
        return self._tfidf

    def query_tokens(self, text: str) -> list[str]:
        """Word tokens of a query, segmented with this index's vocabulary (fast to load)."""
        if self._query_tk is None:
            import tempfile

            self._query_tk = VocabTokenizer(self.words, self.workdir or Path(tempfile.gettempdir()) / "studybot-q")
        return self._query_tk.tokens(text)

    def __len__(self) -> int:
        return len(self.chunks)


class IndexStore:
    def __init__(self, root: Path, embedder: Embedder, scope: str = "main",
                 progress: Progress | None = None, use_shipped: bool = True) -> None:
        self.dir = root / "index" / scope
        self.embedder = embedder
        self.progress = progress
        self.use_shipped = use_shipped  # False: embed every chunk (benchmarks, --export-builtin checks)
        self.notice: str | None = None  # a message for the user about a rebuild

    # -- sources kept with the index ------------------------------------------------------------

    @property
    def _sources_file(self) -> Path:
        return self.dir / "sources.json"

    def user_sources(self) -> list[Path]:
        try:
            return [Path(p) for p in json.loads(self._sources_file.read_text())]
        except (OSError, ValueError):
            return []

    def add_sources(self, paths: list[Path]) -> list[Path]:
        current = {str(p) for p in self.user_sources()}
        new = [str(p.resolve()) for p in paths if str(p.resolve()) not in current]
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self._sources_file, json.dumps(sorted(current | set(new)), ensure_ascii=False))
        return [Path(p) for p in new]

    def documents(self, include_builtin: bool = True) -> list[Document]:
        docs = builtin_documents() if include_builtin else []
        return docs + folder_documents([p for p in self.user_sources() if p.exists()])

    # -- load / build ---------------------------------------------------------------------------

    def load(self, *, any_version: bool = False) -> KnowledgeIndex | None:
        """The current generation, or None (with self.notice set) when missing or unusable.
        any_version: accept an older INDEX_VERSION (to reuse its vectors when rebuilding)."""
        try:
            gen = (self.dir / "CURRENT").read_text().strip()
        except OSError:
            if any(self.dir.glob("gen-*")):
                self.notice = "知识索引缺少 CURRENT，正在重建 / index pointer missing, rebuilding"
            return None
        g = self.dir / gen
        if not gen.startswith("gen-") or not g.is_dir():
            self.notice = "知识索引损坏，正在重建 / index unreadable (bad CURRENT), rebuilding"
            return None
        try:
            meta = json.loads((g / "meta.json").read_text())
            if not isinstance(meta, dict):
                raise ValueError("meta.json is not an object")
            if (meta.get("version") != INDEX_VERSION and not any_version) or meta.get("embedder") != self.embedder.name:
                self.notice = "知识索引来自旧版本或其他嵌入模型，正在重建 / index is from an older version, rebuilding"
                return None
            chunks, words, bigrams = [], [], []
            with open(g / "chunks.jsonl", encoding="utf-8") as f:
                for line in f:
                    row = json.loads(line)
                    words.append(row.pop("w"))
                    bigrams.append(row.pop("b"))
                    chunks.append(Chunk(**row))
            vectors = np.load(g / "vectors.npy", mmap_mode="r")
            if vectors.shape != (len(chunks), self.embedder.dim) or len(chunks) != meta.get("n_chunks"):
                raise ValueError("vector and chunk counts differ")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as e:
            self.notice = f"知识索引损坏，正在重建 / index unreadable ({type(e).__name__}), rebuilding"
            log.warning("index %s unreadable: %s", g, e)
            return None
        return KnowledgeIndex(chunks, vectors, words, bigrams, meta, workdir=self.dir / "query")

    def ensure(self, docs: list[Document] | None = None) -> KnowledgeIndex:
        """Load the index if it matches the documents, else (re)build it under the lock."""
        docs = self.documents() if docs is None else docs
        want = {d.path: d.digest for d in docs}
        idx = self.load()
        if idx is not None and idx.meta.get("files", {}) == want:
            return idx
        with self._lock():
            idx = self.load()  # someone may have built it while we waited
            if idx is not None and idx.meta.get("files", {}) == want:
                return idx
            notice = self.notice
            old = idx if idx is not None else self.load(any_version=True)
            self.notice = notice
            return self._build(docs, old)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "build.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _build(self, docs: list[Document], old: KnowledgeIndex | None) -> KnowledgeIndex:
        old_files: dict[str, str] = (old.meta.get("files", {}) if old else {})
        reuse: dict[str, list[int]] = {}
        if old is not None and old.meta.get("version") == INDEX_VERSION:
            for i, c in enumerate(old.chunks):
                reuse.setdefault(c.path, []).append(i)
        chunks: list[Chunk] = []
        words: list[list[str]] = []
        bigrams: list[list[str]] = []
        vec_parts: list[np.ndarray] = []
        to_embed: list[tuple[int, Chunk]] = []
        for d in docs:
            if old is not None and old_files.get(d.path) == d.digest and d.path in reuse:
                rows = reuse[d.path]
                for r in rows:
                    chunks.append(old.chunks[r])
                    words.append(old.words[r])
                    bigrams.append(old.bigrams[r])
                vec_parts.append(np.asarray(old.vectors[rows]))
                continue
            for c in _chunks_of(d):
                to_embed.append((len(chunks), c))
                chunks.append(c)
                words.append(word_tokens(f"{c.heading} {c.text}"))
                bigrams.append(bigram_tokens(f"{c.heading} {c.text}"))
                vec_parts.append(np.zeros((1, self.embedder.dim), dtype=np.float32))  # placeholder
        vectors = np.concatenate(vec_parts) if vec_parts else np.zeros((0, self.embedder.dim), dtype=np.float32)
        vectors = np.array(vectors, dtype=np.float32)
        if to_embed and old is not None and len(old):
            # an edited file: chunks whose text did not change keep their vectors
            known = {_text_key(c.embed_text()): i for i, c in enumerate(old.chunks)}
            left = []
            for i, c in to_embed:
                r = known.get(_text_key(c.embed_text()))
                if r is not None and old.vectors.shape[1:] == (self.embedder.dim,):
                    vectors[i] = old.vectors[r]
                else:
                    left.append((i, c))
            to_embed = left
        if to_embed and self.use_shipped:
            ahead = shipped_vectors(self.embedder.name)
            if ahead:
                left = []
                for i, c in to_embed:
                    v = ahead.get(_text_key(c.embed_text()))
                    if v is not None and v.shape == (self.embedder.dim,):
                        vectors[i] = v
                    else:
                        left.append((i, c))
                to_embed = left
        batch = 32
        for start in range(0, len(to_embed), batch):
            part = to_embed[start:start + batch]
            vectors[[i for i, _ in part]] = self.embedder.encode([c.embed_text() for _, c in part], is_query=False)
            if self.progress:
                self.progress("embedding", min(start + batch, len(to_embed)), len(to_embed))
        meta = {"version": INDEX_VERSION, "embedder": self.embedder.name, "n_chunks": len(chunks),
                "files": {d.path: d.digest for d in docs}, "embedded": len(to_embed)}
        self._write(chunks, words, bigrams, vectors, meta)
        return KnowledgeIndex(chunks, vectors, words, bigrams, meta, workdir=self.dir / "query")

    def _write(self, chunks: list[Chunk], words: list[list[str]], bigrams: list[list[str]], vectors: np.ndarray,
               meta: dict[str, Any]) -> None:
        existing = sorted((int(p.name[4:]) for p in self.dir.glob("gen-*") if p.name[4:].isdigit()), reverse=True)
        n = (existing[0] + 1) if existing else 1
        for stale in self.dir.glob(".tmp-gen-*"):  # left by a builder that died (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = self.dir / f".tmp-gen-{n}-{os.getpid()}"
        tmp.mkdir(parents=True)
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
            for c, w, b in zip(chunks, words, bigrams, strict=True):
                f.write(json.dumps({**c.as_dict(), "w": w, "b": b}, ensure_ascii=False) + "\n")
        np.save(tmp / "vectors.npy", vectors)
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False))
        os.replace(tmp, self.dir / f"gen-{n}")
        _atomic_write(self.dir / "CURRENT", f"gen-{n}")
        for old in existing[1:]:  # keep the previous generation for readers still on it
            shutil.rmtree(self.dir / f"gen-{old}", ignore_errors=True)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
