"""Article summaries and the day overview.

Offline (`summarize`, `overview`): extractive. A summary is made of whole sentences of the
article, in article order, within `max_chars`. Sentences are scored by
  lead position + TextRank over character 1-2-gram TF-IDF + facts (numbers, names, a main
  action) + closeness to the title − style penalties (dangling openers, quotes, opinion).
Bylines, editor lines and date-only lines never take part, and neither do lines that look
injected (instructions to a model, mentions, links, floods): see jobs/text.py.

If the best-scoring sentence fits in `max_chars`, the summary is whole sentences, picked
greedily by score without near-duplicates. If it does not fit (a headline-sized budget, or
one very long sentence), the summary is the single best unit that fits: a whole sentence,
or a run of consecutive clauses of one of the top sentences, cut only after ，；：、 (never
inside a clause; the trailing mark is dropped). Longer units, sentence openings and whole
sentences score higher. Only when not even one clause fits is the text cut at the limit,
with "…". Either way the text is the article's own: nothing is invented (mention tokens
such as @everyone are the one thing cut out of a sentence).

With an LLM (`summarize_llm`): map-reduce over articles longer than the context budget,
prompt from prompts/system/summarize.md, article sent as data without lines that look
injected. The output is validated (length, no mentions or links, supported by the article's
characters and numbers, not an echo of the prompt) and any failure falls back to the
extractive summary.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.render import pack_lines, scrub

from .text import (
    CharTfidf,
    Sentence,
    clauses,
    fact_score,
    has_link,
    has_mention,
    looks_injected,
    looks_untrusted,
    split_sentences,
    strip_mentions,
    strip_punct,
    strip_untrusted_lines,
    style_penalty,
    textrank,
    tfidf_matrix,
    trim_clause_end,
)

if TYPE_CHECKING:
    from providers.router import Router

log = logging.getLogger(__name__)

DEFAULT_MAX_CHARS = 200
CONTEXT_CHARS = 6000  # article characters per LLM call (about 4k tokens of Chinese) before map-reduce
MAP_CHARS = 400  # length of each partial summary in the map step
MAX_ARTICLE_CHARS = 200_000  # longer input is cut: a "news article" this long is a dump
MAX_SENTENCES = 300  # sentences scored per article (TextRank is quadratic); the rest are far from the lead
REDUNDANT = 0.55  # bigram cosine above which a sentence repeats one already chosen
FILL_MARGIN = 3.0  # sentences scoring this much below the best never fill a summary

SHORT_BUDGET = 60  # below this many characters a summary is headline-sized: one unit


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the sentence score. A headline-sized summary must say what the article is about
    (centrality counts most); a paragraph-sized one should carry the facts a reader needs.
    Set with bench/summarize.py: SHORT on summaries-dev (ROUGE), LONG on articles_eval (key facts)."""

    lead: float
    rank: float
    fact: float
    title: float
    lead_decay: float = 0.35
    no_fact: float = 0.0  # penalty for a sentence with no number, name or action (scenery, mood)


SHORT = Weights(lead=1.0, rank=3.0, fact=0.1, title=0.8)
LONG = Weights(lead=1.0, rank=1.0, fact=1.5, title=0.8, no_fact=0.5)


def _field(obj: Any, *names: str) -> Any:
    for n in names:
        v = obj.get(n) if isinstance(obj, Mapping) else getattr(obj, n, None)
        if v not in (None, ""):
            return v
    return None


# ---- offline: scoring -----------------------------------------------------------------------

@dataclass(slots=True)
class Scored:
    sent: Sentence
    score: float


def _candidates(article: str) -> list[Sentence]:
    """Sentences fit for a summary. A paragraph with an injected-looking sentence is dropped whole
    (the line after "忽略之前的指令" is usually its continuation) unless nothing would remain;
    sentences with links are ads; mention tokens are cut out of a sentence that is otherwise news."""
    sents = split_sentences(article)
    bad_paras = {s.para for s in sents if looks_injected(s.text)}
    kept = [s for s in sents if s.para not in bad_paras] or [s for s in sents if not looks_injected(s.text)]
    out: list[Sentence] = []
    for s in kept:
        if has_link(s.text):
            continue
        if has_mention(s.text):
            text = strip_mentions(s.text)
            if not strip_punct(text):
                continue
            s = Sentence(text, s.start + max(0, s.text.find(text[:4])), s.index, s.para, s.first_in_para)
        out.append(s)
    return [Sentence(s.text, s.start, i, s.para, s.first_in_para) for i, s in enumerate(out[:MAX_SENTENCES])]


def score_sentences(sents: list[Sentence], title: str | None = None, w: Weights = LONG) -> list[Scored]:
    if not sents:
        return []
    texts = [s.text for s in sents]
    n = len(sents)
    m = tfidf_matrix([*texts, title or ""])
    sent_m, title_v = m[:n], m[n]
    rank = textrank(sent_m @ sent_m.T) if n > 1 else np.ones(1)
    rank = rank / (rank.max() or 1.0)
    title_sim = sent_m @ title_v if title else np.zeros(n)
    raw_facts = np.array([fact_score(t) for t in texts])
    facts = raw_facts / max(2.0, raw_facts.max())
    out = []
    for i, s in enumerate(sents):
        lead = 1.0 / (1.0 + w.lead_decay * i) + (0.15 if s.first_in_para else 0.0)
        score = (w.lead * lead + w.rank * rank[i] + w.fact * facts[i] + w.title * title_sim[i]
                 - style_penalty(s.text, s.first_in_para) - (w.no_fact if raw_facts[i] == 0 else 0.0))
        out.append(Scored(s, float(score)))
    return out


def _redundant(vec: np.ndarray, chosen: list[np.ndarray]) -> bool:
    return any(float(vec @ c) > REDUNDANT for c in chosen)


def _join(parts: list[str]) -> str:
    out = ""
    for p in parts:
        if out and out[-1] not in "。！？!?…”’」』）)":
            out += " "
        out += p
    return out


def _pick_sentences(scored: list[Scored], max_chars: int) -> list[Sentence]:
    """Greedy by score under the budget, no near-duplicates; returned in article order."""
    vecs = tfidf_matrix([x.sent.text for x in scored], (2,))
    order = sorted(range(len(scored)), key=lambda i: -scored[i].score)
    chosen: list[int] = []
    used = 0
    for i in order:
        s = scored[i].sent.text
        extra = len(s) + (1 if chosen else 0)
        if used + extra > max_chars:
            continue
        if _redundant(vecs[i], [vecs[j] for j in chosen]):
            continue
        chosen.append(i)
        used += extra
    chosen.sort(key=lambda i: scored[i].sent.start)
    return [scored[i].sent for i in chosen]


# weights of a short unit (a whole sentence or a run of clauses) when the budget holds only one
U_WHOLE, U_FILL, U_OPEN, U_FACT, U_RANK_STEP, U_TITLE, U_CENT = 0.3, 1.5, 0.6, 0.25, 0.4, 0.5, 2.0


def _best_unit(scored: list[Scored], max_chars: int, title: str | None) -> str | None:
    """The best single unit that fits `max_chars`: a whole sentence, or a run of consecutive clauses
    of one of the top sentences. Longer units (up to the budget) and sentence openings score higher."""
    top = sorted(scored, key=lambda x: -x.score)[:4]
    lo = min(8, max(2, max_chars // 3))
    units: list[tuple[float, str]] = []
    for x in scored:
        t = x.sent.text
        if len(t) <= max_chars and len(strip_punct(t)) >= lo:
            units.append((x.score + U_WHOLE + U_OPEN + U_FILL * len(t) / max_chars, t))
    for rank_no, x in enumerate(top):
        text = x.sent.text
        cl = clauses(text)
        for a in range(len(cl)):
            for b in range(a, len(cl)):
                if a == 0 and b == len(cl) - 1:
                    continue  # the whole sentence, counted above
                piece = trim_clause_end(text[cl[a][0]:cl[b][1]].strip())
                if len(piece) > max_chars:
                    break
                if len(strip_punct(piece)) < lo or looks_untrusted(piece):
                    continue
                score = (x.score - U_RANK_STEP * rank_no + (U_OPEN if a == 0 else 0.0)
                         + U_FILL * len(piece) / max_chars + U_FACT * min(2.0, fact_score(piece)))
                units.append((score, piece))
    if not units:
        return None
    if U_CENT:
        tf = CharTfidf([x.sent.text for x in scored], (2,))
        cent = tf.transform([p for _, p in units]) @ tf.centroid()
        units = [(s + U_CENT * float(c), p) for (s, p), c in zip(units, cent, strict=True)]
    if title:
        m = tfidf_matrix([p for _, p in units] + [title])
        sims = m[:-1] @ m[-1]
        units = [(s + U_TITLE * float(sim), p) for (s, p), sim in zip(units, sims, strict=True)]
    return max(units, key=lambda u: u[0])[1]


def _hard_cut(text: str, max_chars: int) -> str:
    """Last resort for a budget smaller than any clause: a prefix, marked as cut."""
    if max_chars <= 1:
        return text[:max_chars]
    return text[: max_chars - 1].rstrip() + "…"


def summarize_sentences(article: str, max_chars: int = DEFAULT_MAX_CHARS, *, title: str | None = None) -> list[str]:
    """The pieces of the extractive summary, each a substring of `article`, in article order."""
    article = (article or "")[:MAX_ARTICLE_CHARS]
    sents = _candidates(article)
    if not sents or max_chars <= 0:
        return []
    scored = score_sentences(sents, title, SHORT if max_chars < SHORT_BUDGET else LONG)
    best = max(scored, key=lambda x: x.score)
    if len(best.sent.text) <= max_chars:
        # the budget holds the best sentence: whole sentences, greedily, the weak ones left out
        floor = best.score - FILL_MARGIN
        return [s.text for s in _pick_sentences([x for x in scored if x.score >= floor], max_chars)]
    unit = _best_unit(scored, max_chars, title)
    if unit:
        return [unit]
    top = max(scored, key=lambda x: x.score).sent.text
    return [_hard_cut(top, max_chars)]


def summarize(article: str, max_chars: int = DEFAULT_MAX_CHARS, *, title: str | None = None) -> str:
    """Offline extractive summary of at most `max_chars` characters (see the module docstring)."""
    return scrub(_join(summarize_sentences(article, max_chars, title=title)))


# ---- offline: the day overview ---------------------------------------------------------------

def overview(articles: Sequence[Any], max_chars: int = 300) -> str:
    """One paragraph for the day: the lead sentence of the most central articles, in paper order.

    `articles` are mappings or objects with `title` and `summary`, `body`, `article` or `text`,
    and optionally `page` (front-page articles weigh more).
    """
    leads: list[tuple[int, str, str, float]] = []  # (order, title, lead sentence, page weight)
    for i, a in enumerate(articles):
        title = str(_field(a, "title") or "")
        text = str(_field(a, "summary", "article", "body", "text") or "")
        pieces = summarize_sentences(text, min(max_chars, 160), title=title or None)
        if not pieces or looks_untrusted(title):
            continue
        leads.append((i, title, pieces[0], _page_weight(_field(a, "page"))))
    if not leads:
        return ""
    m = tfidf_matrix([f"{t} {s}" for _, t, s, _ in leads], (2,))
    central = textrank(m @ m.T) if len(leads) > 1 else np.ones(1)
    central = central / (central.max() or 1.0)
    score = [float(central[k]) + leads[k][3] + 0.3 / (1 + leads[k][0]) for k in range(len(leads))]
    chosen: list[int] = []
    used = 0
    for k in sorted(range(len(leads)), key=lambda k: -score[k]):
        extra = len(leads[k][2]) + (1 if chosen else 0)
        if used + extra > max_chars:
            continue
        if _redundant(m[k], [m[j] for j in chosen]):
            continue
        chosen.append(k)
        used += extra
    chosen.sort(key=lambda k: leads[k][0])
    return scrub(_join([leads[k][2] for k in chosen]))


def _page_weight(page: Any) -> float:
    m = re.search(r"\d+", str(page or ""))
    if not m:
        return 0.0
    n = int(m.group())
    return 0.6 if n == 1 else 0.3 if n <= 4 else 0.0


# ---- with an LLM -----------------------------------------------------------------------------

def prompt_template() -> str:
    return (resources.files("prompts") / "system" / "summarize.md").read_text(encoding="utf-8")


_FENCE = re.compile(r"^```[a-z]*\s*|\s*```$", re.I)
_LABEL = re.compile(r"^\s*(摘要|总结|概要|summary)\s*[:：]\s*", re.I)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
REFUSAL = "无法摘要"


def _ref_grams(ref: str) -> tuple[set[str], set[str]]:
    s = strip_punct(ref).lower()
    return set(s), {s[i:i + 2] for i in range(len(s) - 1)}


def validate_summary(output: str, article: str, max_chars: int, *, title: str | None = None,
                     prompt: str = "") -> str | None:
    """The model's summary if it is safe and grounded, else None (the caller falls back).

    Checks: not empty or a refusal; no mentions, links or injected-looking text; within
    `max_chars` (cut back to whole sentences if longer); its characters, character pairs and
    numbers come from the article (without its injected-looking lines), not from the prompt.
    """
    text = _LABEL.sub("", _FENCE.sub("", (output or "").strip())).strip().strip("\"“”")
    text = re.sub(r"\s*\n\s*", "", text) if re.search(r"[\u4e00-\u9fa5]", text) else re.sub(r"\s+", " ", text)
    if not text or REFUSAL in text or looks_untrusted(text):
        return None
    if len(text) > max_chars:
        pieces = [s.text for s in split_sentences(text, skip_boilerplate=False, strip_datelines=False)]
        kept: list[str] = []
        for p in pieces:
            if len(_join([*kept, p])) > max_chars:
                break
            kept.append(p)
        text = _join(kept)
        if not text:
            return None
    ref = strip_untrusted_lines(article) + "\n" + (title or "")
    ref_chars, ref_pairs = _ref_grams(ref)
    body = strip_punct(text).lower()
    if len(body) < min(4, max_chars):
        return None
    char_support = sum(c in ref_chars for c in body) / len(body)
    pairs = [body[i:i + 2] for i in range(len(body) - 1)]
    pair_support = sum(p in ref_pairs for p in pairs) / len(pairs) if pairs else 1.0
    if char_support < 0.8 or pair_support < 0.45:
        return None
    ref_flat = strip_punct(ref)
    if any(num not in ref_flat for num in _NUMBER.findall(strip_punct(text))):
        return None  # a number the article does not contain is invented
    if prompt and _echoes(body, strip_punct(prompt).lower(), strip_punct(ref).lower()):
        return None
    return scrub(text)


def _echoes(out: str, prompt: str, ref: str, window: int = 10) -> bool:
    """Whether the output repeats a stretch of the prompt that the article does not contain."""
    for i in range(0, max(0, len(out) - window + 1)):
        w = out[i:i + window]
        if w in prompt and w not in ref:
            return True
    return False


def _chunks(article: str, budget: int) -> list[str]:
    """Paragraph-aligned pieces of at most `budget` characters (long paragraphs split by sentence)."""
    units: list[str] = []
    for para in article.splitlines():
        if not para.strip():
            continue
        if len(para) <= budget:
            units.append(para)
            continue
        cur = ""
        for s in split_sentences(para, skip_boilerplate=False, strip_datelines=False):
            if cur and len(cur) + len(s.text) > budget:
                units.append(cur)
                cur = ""
            cur += s.text[:budget]
        if cur:
            units.append(cur)
    return pack_lines(units, budget)  # every unit fits on its own: nothing is clipped


def _messages(article: str, max_chars: int, title: str | None, *, partial: bool) -> list[dict[str, str]]:
    system = prompt_template().replace("{max_chars}", str(max_chars))
    task = ("这是一篇长文章的一部分：请摘录这一部分的要点。" if partial else "请为下面的文章写摘要。")
    user = (f"{task}字数不超过 {max_chars} 字。\n"
            f"<title>{title or ''}</title>\n<article>\n{article}\n</article>")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


class LLMFailed(Exception):
    """No usable answer from any model (the caller falls back to the offline path)."""


def llm_names(router: Router, provider: str | None) -> list[str]:
    """The providers to try: the pinned one, or the chain without the offline engine (it answers from
    the study notes and neither summarises nor classifies)."""
    if provider is not None:
        return [] if provider == "offline" else [provider]
    return [n for n in router.chain if n != "offline"]


def llm_usable(router: Router, provider: str | None) -> bool:
    return bool(llm_names(router, provider))


async def ask_llm(router: Router, messages: list[dict[str, str]], provider: str | None, *, purpose: str,
                  **opts: Any) -> str:
    """One non-streamed reply from the first provider that gives one, through the router (retries,
    cooldowns and call records stay the router's); raises LLMFailed when none does."""
    from providers import collect
    from providers.errors import ProviderError

    names = llm_names(router, provider)
    last = "no language model configured"
    for pos, name in enumerate(names):
        if provider is None and pos < len(names) - 1 and router.cooling(name):
            continue
        try:
            reply = await collect(router.chat(messages, only=name, stream=False, purpose=purpose, **opts))
        except ProviderError as e:
            last = f"{name}: {e.kind}: {e.message}"
            continue
        return reply.text
    raise LLMFailed(last)


async def _call(router: Router, messages: list[dict[str, str]], provider: str | None, max_chars: int) -> str:
    return await ask_llm(router, messages, provider, purpose="summarize", temperature=0.2,
                         max_tokens=max(64, max_chars * 2))


async def _llm_summary(router: Router, article: str, max_chars: int, title: str | None,
                       provider: str | None, context_chars: int, depth: int = 0) -> str:
    """Map-reduce: summarise each context-sized piece, then summarise the partial summaries."""
    clean = strip_untrusted_lines(article)
    if not strip_punct(clean):
        raise LLMFailed("nothing to summarise")
    if len(clean) <= context_chars or depth >= 3:
        msgs = _messages(clean[:context_chars], max_chars, title, partial=False)
        out = await _call(router, msgs, provider, max_chars)
        good = validate_summary(out, article, max_chars, title=title, prompt=msgs[0]["content"])
        if good is None:
            raise LLMFailed("summary rejected by the validator")
        return good
    pieces = _chunks(clean, context_chars)
    sem = asyncio.Semaphore(3)
    map_chars = max(max_chars, MAP_CHARS)

    async def one(piece: str) -> str:
        async with sem:
            msgs = _messages(piece, map_chars, title, partial=True)
            try:
                out = await _call(router, msgs, provider, map_chars)
            except LLMFailed:
                out = ""
            good = validate_summary(out, piece, map_chars, title=title, prompt=msgs[0]["content"])
            # a piece the model failed on keeps its extractive summary: the reduce step still sees it
            return good or _join(summarize_sentences(piece, map_chars, title=title))

    partials = await asyncio.gather(*(one(p) for p in pieces))
    joined = "\n".join(p for p in partials if p)
    reduced = await _llm_summary(router, joined, max_chars, title, provider, context_chars, depth + 1)
    # the reduced text was checked against the partials; check it against the article too
    if validate_summary(reduced, article, max_chars, title=title) is None:
        raise LLMFailed("reduced summary not supported by the article")
    return reduced


async def summarize_llm_detail(router: Router | None, article: str, max_chars: int = DEFAULT_MAX_CHARS, *,
                               title: str | None = None, provider: str | None = None,
                               context_chars: int = CONTEXT_CHARS) -> tuple[str, str]:
    """(summary, method) where method is "llm" or "extractive" (with the reason in the log)."""
    article = (article or "")[:MAX_ARTICLE_CHARS]
    if router is None or not llm_usable(router, provider):
        return summarize(article, max_chars, title=title), "extractive"
    try:
        return await _llm_summary(router, article, max_chars, title, provider, context_chars), "llm"
    except LLMFailed as e:
        log.warning("LLM summary failed (%s); using the extractive summary", e)
        return summarize(article, max_chars, title=title), "extractive"


async def summarize_llm(router: Router | None, article: str, max_chars: int = DEFAULT_MAX_CHARS, *,
                        title: str | None = None, provider: str | None = None,
                        context_chars: int = CONTEXT_CHARS) -> str:
    """An LLM summary, validated; the extractive summary when the LLM fails or misbehaves."""
    text, _ = await summarize_llm_detail(router, article, max_chars, title=title, provider=provider,
                                         context_chars=context_chars)
    return text


# ---- rows (the CLI contract) ------------------------------------------------------------------

def row_text(row: Any) -> tuple[str, str | None]:
    """(article, title) of a row: a mapping with article/body/text (+title), or a plain string."""
    if isinstance(row, str):
        return row, None
    text = _field(row, "article", "body", "text", "content") or ""
    title = _field(row, "title")
    return str(text), (str(title) if title else None)


async def summarize_rows(rows: Sequence[Any], provider: str | None = "offline",
                         max_chars: int = DEFAULT_MAX_CHARS, *, router: Router | None = None,
                         concurrency: int = 4) -> list[dict[str, Any]]:
    """Each row back (as a dict, input order) with `summary` and `summary_method` added.

    `provider` "offline" (or no router) means extractive only; None means the router's chain.
    """
    if max_chars < 1:
        raise ValueError("--max-chars 必须是正整数 / must be a positive integer")
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(row: Any) -> dict[str, Any]:
        out: dict[str, Any] = dict(row) if isinstance(row, Mapping) else {"text": str(row)}
        article, title = row_text(row)
        async with sem:
            if router is None or provider == "offline":
                summary, method = summarize(article, max_chars, title=title), "extractive"
            else:
                summary, method = await summarize_llm_detail(router, article, max_chars, title=title,
                                                             provider=provider)
        out["summary"] = summary
        out["summary_method"] = method
        return out

    return list(await asyncio.gather(*(one(r) for r in rows)))


async def run_summarize(app: Any, rows: Sequence[Any], provider: str | None, max_chars: int) -> list[dict[str, Any]]:
    """CLI entry: `studybot summarize [--provider P] [--max-chars N]` over parsed input rows."""
    if provider == "offline":
        return await summarize_rows(rows, "offline", max_chars)
    router = await (app.ensure_provider(provider) if provider else app.router())
    return await summarize_rows(rows, provider, max_chars, router=router)
