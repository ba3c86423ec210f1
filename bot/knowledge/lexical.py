"""Lexical retrieval: BM25 over jieba tokens and TF-IDF over character bigrams.

Both are small inverted indexes over numpy arrays: a query touches only the postings of
its own terms, so search is well under a millisecond for thousands of chunks.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

_WORD = re.compile(r"[a-z0-9][a-z0-9_.+\-]*|[\u4e00-\u9fff]+")
_CJK = re.compile(r"[\u4e00-\u9fff]")
STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 也 都 就 而 把 被 让 给 对 中 上 下 为 以 于 这 那 一个 一种 什么 怎么 怎样 如何 为什么 "
    "哪些 哪个 吗 呢 吧 啊 么 请 我 你 他 她 它 我们 你们 有 没有 会 能 可以 要 需要 是否 多少 一下 "
    "a an the of to in on for and or is are be what how why which does do can with by as at from it "
    "this that these those vs".split()
)

_jieba_ready = False


def _jieba():  # type: ignore[no-untyped-def]
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        jieba.setLogLevel(60)  # its start-up chatter goes nowhere
        for w in ("LoRA", "QLoRA", "RLHF", "DPO", "PPO", "GRPO", "RoPE", "ALiBi", "YaRN", "KV cache", "GQA", "MQA",
                  "FlashAttention", "PagedAttention", "vLLM", "Ollama", "GGUF", "GPTQ", "AWQ", "EXL2", "BM25",
                  "SwiGLU", "RMSNorm", "LayerNorm", "Transformer", "tokenizer", "softmax", "few-shot",
                  "注意力机制", "自注意力", "位置编码", "低秩", "量化", "微调", "预训练", "奖励模型", "困惑度",
                  "缩放定律", "指令数据", "对话模板", "检索增强", "向量数据库", "知识库", "提示词", "思维链"):
            jieba.add_word(w.lower())
        _jieba_ready = True
    return jieba


def word_tokens(text: str) -> list[str]:
    """jieba tokens, lower-cased, without punctuation and stopwords."""
    jb = _jieba()
    out = []
    for tok in jb.lcut(text.lower()):
        tok = tok.strip()
        if not tok or tok in STOPWORDS:
            continue
        if _WORD.fullmatch(tok) or _CJK.search(tok):
            out.append(tok)
    return out


def bigram_tokens(text: str) -> list[str]:
    """Character bigrams of Chinese runs; whole lower-cased words for Latin text."""
    out: list[str] = []
    for m in _WORD.finditer(text.lower()):
        s = m.group(0)
        if _CJK.match(s):
            if len(s) == 1:
                out.append(s)
            else:
                out.extend(s[i:i + 2] for i in range(len(s) - 1))
        elif s not in STOPWORDS:
            out.append(s)
    return out


class _Inverted:
    def __init__(self, n_docs: int) -> None:
        self.n = n_docs
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def score(self, terms: Iterable[tuple[str, float]]) -> np.ndarray:
        scores = np.zeros(self.n, dtype=np.float32)
        for term, qw in terms:
            p = self.postings.get(term)
            if p is not None:
                scores[p[0]] += qw * p[1]
        return scores


class BM25(_Inverted):
    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        super().__init__(len(docs))
        lengths = np.array([len(d) for d in docs], dtype=np.float32)
        avg = float(lengths.mean()) if len(docs) else 1.0
        df: Counter[str] = Counter()
        tfs = [Counter(d) for d in docs]
        for tf in tfs:
            df.update(tf.keys())
        acc: dict[str, tuple[list[int], list[float]]] = {}
        for i, tf in enumerate(tfs):
            norm = k1 * (1 - b + b * (lengths[i] / (avg or 1.0)))
            for term, f in tf.items():
                idf = math.log(1 + (self.n - df[term] + 0.5) / (df[term] + 0.5))
                ids, ws = acc.setdefault(term, ([], []))
                ids.append(i)
                ws.append(idf * f * (k1 + 1) / (f + norm))
        self.postings = {t: (np.array(i, dtype=np.int32), np.array(w, dtype=np.float32)) for t, (i, w) in acc.items()}

    def search(self, query_tokens: list[str]) -> np.ndarray:
        return self.score((t, 1.0) for t in dict.fromkeys(query_tokens))


class TfIdf(_Inverted):
    """Cosine over sublinear TF-IDF vectors."""

    def __init__(self, docs: list[list[str]]) -> None:
        super().__init__(len(docs))
        df: Counter[str] = Counter()
        tfs = [Counter(d) for d in docs]
        for tf in tfs:
            df.update(tf.keys())
        self.idf = {t: math.log((1 + self.n) / (1 + c)) + 1 for t, c in df.items()}
        acc: dict[str, tuple[list[int], list[float]]] = {}
        for i, tf in enumerate(tfs):
            w = {t: (1 + math.log(f)) * self.idf[t] for t, f in tf.items()}
            norm = math.sqrt(sum(v * v for v in w.values())) or 1.0
            for t, v in w.items():
                ids, ws = acc.setdefault(t, ([], []))
                ids.append(i)
                ws.append(v / norm)
        self.postings = {t: (np.array(i, dtype=np.int32), np.array(w, dtype=np.float32)) for t, (i, w) in acc.items()}

    def search(self, query_tokens: list[str]) -> np.ndarray:
        tf = Counter(t for t in query_tokens if t in self.idf)
        w = {t: (1 + math.log(f)) * self.idf[t] for t, f in tf.items()}
        norm = math.sqrt(sum(v * v for v in w.values())) or 1.0
        return self.score((t, v / norm) for t, v in w.items())
