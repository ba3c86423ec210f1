"""Hybrid retrieval: embeddings + BM25 over jieba tokens + character-bigram TF-IDF, fused by
reciprocal rank (k = 10), after expanding abbreviations and English terms for the lexical search
(see glossary.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .chunk import Chunk
from .embed import Embedder
from .glossary import EXPANSIONS
from .index import KnowledgeIndex
from .lexical import bigram_tokens, is_one_han, word_tokens

# Reciprocal rank fusion: score = sum of weight / (RRF_K + rank). The usual k = 60 suits many
# lists of similar quality; here three lists of uneven quality (the 4-bit embedder is the weakest
# on both bench sets), and a first place in one list should count. bench/rag.py, hit@3 (MRR):
#   built-in notes     k=60 0.938 (0.821)  k=20 0.946 (0.824)  k=10 0.938 (0.827)
#   + shared course    k=60 0.854 (0.750)  k=20 0.892 (0.768)  k=10 0.908 (0.783)
# against the best single method (BM25) at 0.892 and 0.885. Equal weights: no weighting was
# better on both sets.
RRF_K = 10
RRF_WEIGHTS = {"embed": 1.0, "bm25": 1.0, "bigram": 1.0}
CANDIDATES = 50
MAX_QUERY_CHARS = 2000  # a 10,000-character question is cut, not refused
QUERY_EMBED_CHARS = 200  # the embedder sees the question itself (expansions are for lexical search)

_EXP_RE = re.compile(r"(?<![a-z0-9])(" + "|".join(sorted(map(re.escape, EXPANSIONS), key=len, reverse=True))
                     + r")(?:e?s)?(?![a-z0-9])")


def expand_query(query: str) -> str:
    low = query.lower()
    extra = [EXPANSIONS[m.group(1)] for m in _EXP_RE.finditer(low)]
    return f"{query} {' '.join(dict.fromkeys(extra))}" if extra else query


@dataclass(slots=True)
class Hit:
    chunk: Chunk
    score: float  # fused score (RRF) or the single method's score
    cosine: float
    lexical: float  # BM25 score of the best lexical match, for "not found" decisions
    rank: int = 0
    # distinct query words (after expansion) found in the chunk, and whether every word of the
    # question as asked is in it; None when unknown. One rare shared word ("上海" in a question
    # about plane tickets) is not evidence that the notes answer the question.
    matched: int | None = None
    complete: bool = False

    def as_source(self, snippet_chars: int = 240) -> dict[str, object]:
        text = " ".join(self.chunk.text.split())
        return {"title": self.chunk.title, "path": self.chunk.path, "section": self.chunk.section,
                "heading": self.chunk.heading, "lines": [self.chunk.start_line, self.chunk.end_line],
                "score": round(float(self.score), 4), "snippet": text[:snippet_chars]}


MODES = ("hybrid", "embed", "bm25", "bigram")


class Retriever:
    def __init__(self, index: KnowledgeIndex, embedder: Embedder) -> None:
        self.index = index
        self.embedder = embedder

    def _rank(self, scores: np.ndarray, n: int = CANDIDATES) -> np.ndarray:
        n = min(n, len(scores))
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        top = np.argpartition(-scores, n - 1)[:n]
        return top[np.argsort(-scores[top], kind="stable")]

    def search(self, query: str, k: int = 5, mode: str = "hybrid", *, fast: bool = False) -> list[Hit]:
        """`fast` segments the query with the index's own vocabulary instead of jieba's full
        dictionary (which takes over a second to load per process). Ranking is as good and the
        "found in the notes" rule holds (bench/rag.py measures both ways); the offline engine
        keeps full segmentation, which is a little stricter about off-topic questions."""
        query = (query or "").strip()[:MAX_QUERY_CHARS]
        if not query or len(self.index) == 0:
            return []
        expanded = expand_query(query)
        need_embed = mode in ("hybrid", "embed")
        cos = (np.asarray(self.index.vectors @ self.embedder.encode([query[:QUERY_EMBED_CHARS]], is_query=True)[0])
               if need_embed else np.zeros(len(self.index), dtype=np.float32))
        tokens = self.index.query_tokens if fast else word_tokens
        bm = self.index.bm25.search(tokens(expanded))  # always: its score backs "not found"
        bg = self.index.tfidf.search(bigram_tokens(expanded)) if mode in ("hybrid", "bigram") else None
        if mode == "embed":
            fused, order = cos, self._rank(cos)
        elif mode == "bm25":
            fused, order = bm, self._rank(bm)
            order = order[bm[order] > 0]
        elif mode == "bigram":
            assert bg is not None
            fused, order = bg, self._rank(bg)
            order = order[bg[order] > 0]
        else:
            assert bg is not None
            fused = np.zeros(len(self.index), dtype=np.float32)
            for name, scores, only_positive in (("embed", cos, False), ("bm25", bm, True), ("bigram", bg, True)):
                ranked = self._rank(scores)
                if only_positive:
                    ranked = ranked[scores[ranked] > 0]
                fused[ranked] += RRF_WEIGHTS[name] / (RRF_K + 1 + np.arange(len(ranked), dtype=np.float32))
            order = self._rank(fused)
            order = order[fused[order] > 0]
        # one Chinese character is weak evidence: the fast segmentation leaves unknown words as
        # characters (红烧肉 -> 红烧 + 肉, 好吃 -> 好 + 吃) that a note may share by chance
        q_words = {w for w in tokens(expanded) if not is_one_han(w)}
        asked = set(tokens(query))
        hits = []
        for r, i in enumerate(order[:k]):
            words = set(self.index.words[i])
            hits.append(Hit(self.index.chunks[i], float(fused[i]), float(cos[i]), float(bm[i]), r + 1,
                            len(q_words & words), bool(asked) and asked <= words))
        return hits
