"""Lexical retrieval: BM25 over jieba tokens and TF-IDF over character bigrams.

Both are small inverted indexes over numpy arrays: a query touches only the postings of
its own terms, so search is well under a millisecond for thousands of chunks.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

_WORD = re.compile(r"[a-z0-9][a-z0-9_.+\-]*|[\u4e00-\u9fff]+|[\u0370-\u03ff]+")  # Latin, Chinese, Greek (α, β)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_ALNUM = re.compile(r"[a-z0-9]+|[\u0370-\u03ff]+")
STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 也 都 就 而 把 被 让 给 对 中 上 下 为 以 于 这 那 一个 一种 什么 怎么 怎样 如何 为什么 "
    "哪些 哪个 吗 呢 吧 啊 么 请 我 你 他 她 它 我们 你们 有 没有 会 能 可以 要 需要 是否 多少 一下 "
    "到 从 又 再 很 更 最 还 才 个 得 着 过 地 之 其 该 每 啥 咋 嘛 呀 哦 "
    "这个 那个 这些 那些 一些 这样 那样 这种 那种 已经 因为 所以 但是 如果 然后 以及 还是 或者 并且 而且 "
    "比较 非常 一般 现在 自己 大家 时候 到底 大概 应该 能否 能不能 是不是 有没有 怎么办 "
    "a an the of to in on for and or is are be what how why which does do can with by as at from it "
    "this that these those vs i you we my your our me do did done was were been has have had will would "
    "should could there their them then than so if not no any some into about just".split()
)

# domain words jieba should keep whole (lower-case; Latin names keep their symbols)
USER_WORDS = (
    "LoRA", "QLoRA", "RLHF", "DPO", "PPO", "GRPO", "RoPE", "ALiBi", "YaRN", "GQA", "MQA",
    "FlashAttention", "PagedAttention", "vLLM", "Ollama", "GGUF", "GPTQ", "AWQ", "EXL2", "BM25",
    "SwiGLU", "RMSNorm", "LayerNorm", "Transformer", "tokenizer", "softmax", "few-shot",
    "注意力机制", "自注意力", "位置编码", "低秩", "量化", "微调", "预训练", "奖励模型", "困惑度",
    "缩放定律", "指令数据", "对话模板", "检索增强", "向量数据库", "知识库", "提示词", "思维链",
    "学习率", "参数量", "显存", "反向传播", "梯度下降", "损失函数", "交叉熵", "词向量", "余弦相似度",
    "相似度", "上下文", "重排序", "切块", "去重", "离群值", "超参数", "前馈网络", "残差连接", "归一化",
    "词表", "分词器", "解码器", "编码器", "训练循环", "自动求导", "掩码", "推理", "吞吐", "延迟",
)

_jieba_ready = False


def _jieba():  # type: ignore[no-untyped-def]
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        from .glossary import chinese_terms

        jieba.setLogLevel(60)  # its start-up chatter goes nowhere
        for w in (*USER_WORDS, *chinese_terms()):
            jieba.add_word(w.lower())
        _jieba_ready = True
    return jieba


def _plain(tok: str) -> str:
    """English plural → singular, so "tokens" meets "token" (both sides go through this)."""
    if len(tok) > 3 and tok.endswith("s") and not tok.endswith(("ss", "us", "is")) and tok.isascii():
        return tok[:-1]
    return tok


def is_one_han(tok: str) -> bool:
    """A single Chinese character: weak evidence on its own that a text matches."""
    return len(tok) == 1 and _CJK.match(tok) is not None


def word_tokens(text: str) -> list[str]:
    """jieba tokens, lower-cased, without punctuation and stopwords."""
    jb = _jieba()
    out = []
    for tok in jb.lcut(text.lower()):
        tok = tok.strip()
        if not tok or tok in STOPWORDS:
            continue
        if _WORD.fullmatch(tok) or _CJK.search(tok):
            out.append(_plain(tok))
    return out


class VocabTokenizer:
    """Query-time segmentation with the index's own vocabulary as jieba's dictionary.

    jieba's full dictionary takes well over a second to load in every process; a query only
    needs the words the index knows (no other word can score), and a dictionary of those
    loads in milliseconds. Unknown Chinese runs still go through jieba's HMM.

    Only Chinese runs go through that dictionary. Latin words are taken whole, as the full
    dictionary does: a vocabulary of note words (without stopwords) would cut "what" into
    w + hat and "capital" into c + api + tal, inventing matches for off-topic questions.
    """

    def __init__(self, words: Iterable[list[str]], workdir: Path) -> None:
        import jieba

        counts: Counter[str] = Counter()
        for doc in words:
            counts.update(doc)
        for w in USER_WORDS:
            counts[w.lower()] += 1
        # stopwords are not index words, but they must segment whole (怎么办, not 怎 + 办) to be dropped
        for w in STOPWORDS:
            if _CJK.match(w):
                counts[w] += 1
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"query_dict.v3.{len(counts)}.txt"
        if not path.exists():
            # frequency grows with length so a known long word beats its parts (as in jieba's own
            # dictionary, where 今天天气 outweighs 今天 + 天气); the count only orders equal lengths
            lines = "".join(f"{w} {int(10 ** min(len(w), 8) * (1 + math.log(c)))}\n"
                            for w, c in counts.items() if w and " " not in w)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(lines, encoding="utf-8")
            os.replace(tmp, path)
        jieba.setLogLevel(60)
        self._tk = jieba.Tokenizer(dictionary=str(path))
        self._tk.tmp_dir = str(workdir)
        self._known = frozenset(counts)

    def tokens(self, text: str) -> list[str]:
        out = []
        for run in _WORD.findall(text.lower()):
            if _CJK.match(run):
                pieces = self._tk.lcut(run)
            else:  # a known word with its symbols (few-shot, gpt-4o), else its letter-digit parts
                pieces = [run] if run in self._known else _ALNUM.findall(run) or [run]
            for tok in pieces:
                tok = tok.strip()
                if tok and tok not in STOPWORDS and (_WORD.fullmatch(tok) or _CJK.search(tok)):
                    out.append(_plain(tok))
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

    @staticmethod
    def _triples(docs: list[list[str]]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(vocabulary, doc ids, term ids, term counts): one row per distinct term of each doc."""
        vocab: dict[str, int] = {}
        d_ids: list[int] = []
        t_ids: list[int] = []
        counts: list[int] = []
        for i, d in enumerate(docs):
            tf = Counter(d)
            d_ids.extend([i] * len(tf))
            t_ids.extend(vocab.setdefault(t, len(vocab)) for t in tf)
            counts.extend(tf.values())
        return (list(vocab), np.array(d_ids, dtype=np.int32), np.array(t_ids, dtype=np.int64),
                np.array(counts, dtype=np.float32))

    def _store(self, vocab: list[str], d_ids: np.ndarray, t_ids: np.ndarray, weights: np.ndarray) -> None:
        order = np.argsort(t_ids, kind="stable")
        d_sorted, w_sorted = d_ids[order], weights[order].astype(np.float32)
        ends = np.cumsum(np.bincount(t_ids, minlength=len(vocab)))
        start = 0
        for term, end in zip(vocab, ends.tolist(), strict=True):
            self.postings[term] = (d_sorted[start:end], w_sorted[start:end])
            start = end


class BM25(_Inverted):
    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        super().__init__(len(docs))
        vocab, d_ids, t_ids, tf = self._triples(docs)
        if not vocab:
            return
        lengths = np.array([len(d) for d in docs], dtype=np.float64)
        avg = float(lengths.mean()) or 1.0
        df = np.bincount(t_ids, minlength=len(vocab)).astype(np.float64)
        idf = np.log(1 + (self.n - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * lengths / avg)
        weights = idf[t_ids] * tf * (k1 + 1) / (tf + norm[d_ids])
        self._store(vocab, d_ids, t_ids, weights)

    def search(self, query_tokens: list[str]) -> np.ndarray:
        return self.score((t, 1.0) for t in dict.fromkeys(query_tokens))


class TfIdf(_Inverted):
    """Cosine over sublinear TF-IDF vectors."""

    def __init__(self, docs: list[list[str]]) -> None:
        super().__init__(len(docs))
        vocab, d_ids, t_ids, tf = self._triples(docs)
        df = np.bincount(t_ids, minlength=len(vocab)).astype(np.float64)
        idf = np.log((1 + self.n) / (1 + df)) + 1
        self.idf = dict(zip(vocab, idf.tolist(), strict=True))
        if not vocab:
            return
        w = (1 + np.log(tf.astype(np.float64))) * idf[t_ids]
        norms = np.sqrt(np.bincount(d_ids, weights=w * w, minlength=self.n))
        norms[norms == 0] = 1.0
        self._store(vocab, d_ids, t_ids, w / norms[d_ids])

    def search(self, query_tokens: list[str]) -> np.ndarray:
        tf = Counter(t for t in query_tokens if t in self.idf)
        w = {t: (1 + math.log(f)) * self.idf[t] for t, f in tf.items()}
        norm = math.sqrt(sum(v * v for v in w.values())) or 1.0
        return self.score((t, v / norm) for t, v in w.items())
