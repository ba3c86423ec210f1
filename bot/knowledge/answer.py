"""Offline answers: the most relevant whole sentences of the best passages, cited, and an
honest "not found" when the notes do not cover the question. Never invented text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .lexical import word_tokens
from .retrieve import Hit, expand_query

# A hit counts as an answer when the words match (BM25, on at least two distinct words of the
# question, single Chinese characters not counted, or on all of them) or the meaning clearly does
# (cosine). Calibrated with bench/rag.py: each of the 130 bench questions keeps a relevant hit in
# its top 5, none of the 25 off-topic questions in bench/data/off_topic.txt (weather, travel,
# cooking, sport...) gets one with full segmentation, one does with the fast one (今天天气怎么样:
# a note's example sentence says 今天的天气). BM25 >= 4 on one shared word let 9 through (上海, 春节).
MIN_LEXICAL = 5.0
MIN_MATCHED_WORDS = 2
MIN_COSINE = 0.885

# a sentence: up to a Chinese end mark, or an English one followed by a space (not "3.5" or "e5.c")
_SENT = re.compile(r"[^。！？!?\n]+?(?:[。！？!?]+|[.;](?=\s)|$)")
_CODE = re.compile(r"```.*?```", re.S)
_MD = re.compile(r"(\*\*|__|`|^#+\s*|^\s*[-*+]\s+|^\s*\d+\.\s+)", re.M)


@dataclass(slots=True)
class OfflineAnswer:
    text: str
    hits: list[Hit]
    found: bool


def is_relevant(hit: Hit) -> bool:
    if hit.cosine >= MIN_COSINE:
        return True
    if hit.lexical < MIN_LEXICAL:
        return False
    return hit.matched is None or hit.matched >= MIN_MATCHED_WORDS or hit.complete


def sentences(text: str) -> list[str]:
    text = _CODE.sub(" ", text)
    out: list[str] = []
    carry = ""
    for line in text.split("\n"):
        line = _MD.sub("", line).strip()
        if not line or line.startswith("|"):  # table rows read badly as prose
            continue
        line = carry + line
        carry = ""
        if line.endswith(("：", ":")):  # "新的权重写作：" belongs with the formula line after it
            carry = line
            continue
        for s in _SENT.findall(line):
            s = s.strip()
            if len(s) >= 6:
                out.append(s)
    if carry:
        out.append(carry)
    return out


def extract(question: str, hits: list[Hit], max_chars: int = 420) -> OfflineAnswer:
    """Pick sentences from the relevant hits that carry the question's terms."""
    good = [h for h in hits if is_relevant(h)]
    if not good:
        return OfflineAnswer("", [], False)
    q_terms = set(word_tokens(expand_query(question)))
    scored: list[tuple[float, int, int, str]] = []
    for hi, h in enumerate(good[:3]):
        for si, s in enumerate(sentences(h.chunk.text)):
            s_terms = set(word_tokens(s))
            overlap = sum(min(len(t), 4) for t in q_terms & s_terms)
            score = overlap + (3.0 if si == 0 else 0.0) + 2.0 / (hi + 1) - 0.002 * len(s)
            scored.append((score, hi, si, s))
    scored.sort(key=lambda x: -x[0])
    chosen: list[tuple[int, int, str]] = []
    used = 0
    for _, hi, si, s in scored:
        if used + len(s) > max_chars and chosen:
            continue
        chosen.append((hi, si, s))
        used += len(s)
        if used >= max_chars * 0.8:
            break
    chosen.sort()
    # cite in order of appearance, and list only the passages actually quoted
    order: list[int] = []
    parts: list[str] = []
    for i, (hi, _, sent) in enumerate(chosen):
        if hi not in order:
            order.append(hi)
        sent = sent if sent.endswith(("。", "！", "？", ".", "!", "?")) else sent + "。"
        last_of_hit = i + 1 == len(chosen) or chosen[i + 1][0] != hi
        parts.append(sent + (f" [{order.index(hi) + 1}]" if last_of_hit else ""))
    text = ""
    for part in parts:  # English sentences keep a space between them; Chinese ones do not
        text += (" " if text and part[:1].isascii() and text[-1:].isascii() else "") + part
    return OfflineAnswer(text, [good[h] for h in order], True)
