"""Generated questions: an LLM drafts multiple-choice questions from retrieved note chunks.

Output must be strict JSON. Each draft is checked (4 distinct options, exactly one answer, an
explanation, grounded in the chunk it cites) and queued for review; only `approve` lets it into
the bank. The offline engine cannot write questions, so it is refused up front.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from providers import collect

from .bank import DIFFICULTIES, LETTERS, TOPICS, BankError, Question, check_generated, note_headings
from .session import QuizError, utc_now
from .store import QuizStore

if TYPE_CHECKING:
    from bot.app import App
    from bot.knowledge.chunk import Chunk

MAX_DRAFTS = 10
CHUNKS_PER_CALL = 4
GROUNDED_MIN = 0.6  # share of the correct option's key terms found in the cited chunk

SYSTEM_PROMPT = """你是大模型课程的出题老师。只根据下面编号的资料片段出单项选择题，不要使用片段以外的知识。
You write multiple-choice questions for an LLM course, using ONLY the numbered passages below.

只输出一个 JSON 对象，不要任何其它文字或代码块 / Output exactly one JSON object and nothing else:
{"questions": [{"chunk": 1, "question": "…", "options": ["…", "…", "…", "…"], "answer": 0,
  "explanation": "…", "difficulty": "easy"}]}

规则 / rules:
- chunk: 题目依据的片段编号 / the number of the passage the question is based on
- options: 恰好 4 个互不相同的选项 / exactly 4 distinct options
- answer: 唯一正确选项的下标 0-3 / the index (0-3) of the single correct option
- 正确选项的关键术语必须出现在所引片段中 / the correct option's key terms must appear in that passage
- explanation: 说明为什么正确，并指出常见误解 / why it is right and what the distractors get wrong
- difficulty: easy | medium | hard
- 用中文出题，术语可保留英文 / write in Chinese; keep English technical terms"""

_FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_LATIN = re.compile(r"[a-z][a-z0-9+_.\-]*[a-z0-9]|[a-z]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
# bigrams that carry no meaning of their own
_STOP_BIGRAMS = {"一个", "可以", "我们", "的是", "就是", "这个", "因为", "所以", "如果", "没有", "不是", "通常", "需要",
                 "使用", "进行", "之间", "以及", "其中", "或者", "什么", "哪个", "为了", "时候", "主要", "会使"}
_STOP_WORDS = {"the", "a", "an", "of", "to", "and", "or", "in", "is", "are", "for", "on", "by", "with", "it"}


class DraftError(ValueError):
    """A draft (or the whole model reply) refused, with the reason in Chinese and English."""


@dataclass(slots=True)
class Draft:
    topic: str
    payload: dict[str, Any]  # bank shape without id: question, options, answer, explanation, difficulty, ref
    chunk: dict[str, Any]  # path, heading, text
    grounding: float

    @property
    def fingerprint(self) -> str:
        norm = " ".join(self.payload["question"].split()).casefold() + "\x00" + "\x00".join(
            sorted(" ".join(o.split()).casefold() for o in self.payload["options"]))
        return hashlib.sha256(norm.encode()).hexdigest()[:32]


@dataclass(slots=True)
class GenerateReport:
    topic: str
    provider: str | None
    model: str | None
    queued: list[tuple[int, str]] = field(default_factory=list)  # (queue id, question text)
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)  # one message per refused draft

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "provider": self.provider, "model": self.model,
                "queued": [{"id": i, "question": q} for i, q in self.queued], "duplicates": self.duplicates,
                "rejected": self.rejected}


# ---- grounding ------------------------------------------------------------------------------------------

def key_terms(text: str) -> set[str]:
    """Latin words, numbers and Chinese character bigrams of a text (lower-cased)."""
    low = text.lower()
    terms = {w for w in _LATIN.findall(low) if len(w) >= 2 and w not in _STOP_WORDS}
    terms |= set(_NUMBER.findall(low))
    for run in _CJK_RUN.findall(low):
        terms |= {run[i:i + 2] for i in range(len(run) - 1)} - _STOP_BIGRAMS
    return terms


def grounding(text: str, chunk_text: str) -> float:
    """Share of the text's key terms that occur in the chunk (0 when it has none)."""
    terms = key_terms(text)
    if not terms:
        return 0.0
    hay = "".join(chunk_text.lower().split())
    return sum(1 for t in terms if t in hay) / len(terms)


# ---- parsing and checking ---------------------------------------------------------------------------------

def parse_reply(text: str) -> list[Any]:
    """The `questions` list of a strict JSON reply (a ```json fence around it is tolerated)."""
    body = text.strip()
    m = _FENCED.match(body)
    if m:
        body = m.group(1)
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as e:
        raise DraftError(f"模型输出不是合法 JSON / the model's output is not valid JSON: {e.msg} "
                         f"(line {e.lineno}, column {e.colno})") from None
    items = doc.get("questions") if isinstance(doc, Mapping) else doc
    if not isinstance(items, list):
        raise DraftError('JSON 中缺少 "questions" 列表 / the JSON has no "questions" list')
    return items


def _answer_index(raw: Mapping[str, Any], options: Sequence[Any]) -> int:
    """The single correct index, whatever shape the model used; DraftError when not exactly one."""
    flagged = [i for i, o in enumerate(options) if isinstance(o, Mapping) and o.get("correct") is True]
    ans = raw.get("answers", raw.get("answer"))
    if flagged and ans is None:
        ans = flagged
    if isinstance(ans, list):
        if len({json.dumps(a, sort_keys=True) for a in ans}) != 1:
            raise DraftError(f"必须恰好一个正确选项 / exactly one correct option required, got {len(ans)}: {ans!r}")
        ans = ans[0]
    if isinstance(ans, str) and len(ans.strip()) == 1 and ans.strip().upper() in LETTERS:
        ans = LETTERS.index(ans.strip().upper())
    if isinstance(ans, bool) or not isinstance(ans, int) or not 0 <= ans <= 3:
        raise DraftError(f"answer 须为 0-3 的下标 / answer must be one index 0-3, got {ans!r}")
    if flagged and flagged != [ans]:
        raise DraftError(f"必须恰好一个正确选项 / exactly one correct option required, got {len(flagged)} flagged")
    return ans


def check_draft(raw: Any, chunks: Sequence[Chunk], topic: str) -> Draft:
    """Validate one drafted question against the chunks it was drafted from."""
    if not isinstance(raw, Mapping):
        raise DraftError("题目不是 JSON 对象 / the draft is not a JSON object")
    text = raw.get("question")
    if not isinstance(text, str) or not text.strip():
        raise DraftError("题干为空 / empty question text")
    opts_raw = raw.get("options")
    if not isinstance(opts_raw, list) or len(opts_raw) != 4:
        n = len(opts_raw) if isinstance(opts_raw, list) else 0
        raise DraftError(f"需要恰好 4 个选项 / exactly 4 options required, got {n}")
    options = [o.get("text") if isinstance(o, Mapping) else o for o in opts_raw]
    if not all(isinstance(o, str) and o.strip() for o in options):
        raise DraftError("选项须为非空文字 / options must be non-empty text")
    if len({" ".join(o.split()).casefold() for o in options}) != 4:
        raise DraftError("选项有重复 / the 4 options must be distinct")
    answer = _answer_index(raw, opts_raw)
    expl = raw.get("explanation")
    if not isinstance(expl, str) or not expl.strip():
        raise DraftError("缺少解析 / missing explanation")
    diff = raw.get("difficulty", "medium")
    if diff not in DIFFICULTIES:
        raise DraftError(f"难度不合法 / difficulty {diff!r} not in {', '.join(DIFFICULTIES)}")
    idx = raw.get("chunk", 1 if len(chunks) == 1 else None)
    if isinstance(idx, bool) or not isinstance(idx, int) or not 1 <= idx <= len(chunks):
        raise DraftError(f"chunk 须为 1-{len(chunks)} 的片段编号 / chunk must cite passage 1-{len(chunks)}, "
                         f"got {idx!r}")
    chunk = chunks[idx - 1]
    right = str(options[answer])
    score = grounding(right, chunk.text)
    # a numeric answer ("约 0.731") is computed, not quoted: then its explanation must be grounded
    numeric = bool(_NUMBER.search(right)) and not (key_terms(right) - set(_NUMBER.findall(right.lower())))
    if numeric:
        score = max(score, grounding(str(expl), chunk.text))
    if score < GROUNDED_MIN:
        raise DraftError(f"正确选项不能在所引片段中找到依据 / the correct option is not grounded in the cited "
                         f"passage [{idx}] ({chunk.path} › {chunk.heading}): {score:.0%} of its key terms found")
    payload = {"question": text.strip(), "options": [str(o).strip() for o in options], "answer": answer,
               "explanation": expl.strip(), "difficulty": diff,
               "ref": {"path": chunk.path, "heading": chunk.heading}}
    return Draft(topic, payload, {"path": chunk.path, "heading": chunk.heading, "text": chunk.text}, score)


# ---- retrieval and the model call ----------------------------------------------------------------------

async def retrieve_chunks(app: App, topic: str, k: int = CHUNKS_PER_CALL, focus: str | None = None,
                          rng: random.Random | None = None) -> list[Chunk]:
    """Chunks of the topic's built-in note, around `focus` or a random section heading."""
    path = f"knowledge/{topic}.md"
    heads = sorted(note_headings(path) or ())
    query = focus or ((rng or random.Random()).choice(heads) if heads else topic)
    hits = await app.kb.search(f"{query} {topic}", k=k * 4)
    out: list[Chunk] = []
    known = note_headings(path) or frozenset()
    for h in hits:
        c = h.chunk
        # only chunks whose heading the bank can reference
        if c.path == path and c.heading in known and all(c.text != o.text for o in out):
            out.append(c)
        if len(out) >= k:
            break
    return out


def build_messages(topic: str, chunks: Sequence[Chunk], n: int) -> list[dict[str, str]]:
    passages = "\n\n".join(f"[{i}] ({c.path} › {c.heading})\n{c.text}" for i, c in enumerate(chunks, 1))
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"主题 / topic: {topic}\n请出 {n} 道题 / write {n} questions.\n\n"
                                        f"资料 / passages:\n\n{passages}"}]


async def generate_questions(app: App, topic: str, n: int = 3, *, provider: str | None = None,
                             focus: str | None = None, rng: random.Random | None = None,
                             now: datetime | None = None) -> GenerateReport:
    """Draft `n` questions for a topic and queue the valid ones for review."""
    if topic not in TOPICS:
        raise QuizError(f"未知主题 / unknown topic {topic!r}；可选 / choose one of: {', '.join(TOPICS)}")
    if not 1 <= n <= MAX_DRAFTS:
        raise QuizError(f"每次出 1-{MAX_DRAFTS} 题 / ask for 1-{MAX_DRAFTS} questions")
    router = await (app.ensure_provider(provider) if provider else app.router())
    llms = [p for p in ([provider] if provider else router.chain) if p != "offline"]
    if not llms:
        raise QuizError("出题需要配置大模型（离线引擎不能出题）/ generating questions needs an LLM provider; "
                        "the offline engine cannot write questions. Set STUDYBOT_PROVIDERS, e.g. qwen or vllm.")
    chunks = await retrieve_chunks(app, topic, focus=focus, rng=rng)
    if not chunks:
        raise QuizError(f"笔记中找不到 {topic} 的资料 / no note passages found for {topic}")
    reply = await collect(router.chat(build_messages(topic, chunks, n), only=provider, stream=False,
                                      purpose="quiz_generate", temperature=0.4))
    final = reply.final
    used = final.provider if final else None
    report = GenerateReport(topic, used, final.model if final else None)
    if used == "offline":  # the chain fell through to the offline engine: its text is not a draft
        raise QuizError("所有大模型都不可用，离线引擎不能出题 / every LLM provider failed; the offline engine "
                        "cannot write questions")
    try:
        items = parse_reply(reply.text)
    except DraftError as e:
        report.rejected.append(str(e))
        return report
    qstore = await QuizStore.attach(await app.store())
    ts = (now or utc_now()).timestamp()
    for i, raw in enumerate(items[:MAX_DRAFTS], 1):
        try:
            draft = check_draft(raw, chunks, topic)
        except DraftError as e:
            report.rejected.append(f"草稿 / draft #{i}: {e}")
            continue
        qid = await qstore.add_draft(topic=topic, payload=draft.payload, chunk=draft.chunk,
                                     fingerprint=draft.fingerprint, provider=report.provider, model=report.model,
                                     now=ts)
        if qid is None:
            report.duplicates += 1
        else:
            report.queued.append((qid, draft.payload["question"]))
    return report


# ---- the review queue -----------------------------------------------------------------------------------

def generated_id(topic: str, draft_id: int) -> str:
    return f"gen-{topic}-{draft_id:04d}"


async def approve(qstore: QuizStore, draft_id: int, *, by: str | None = None,
                  now: datetime | None = None) -> Question:
    """Move a pending draft into the bank (checked like a bank entry first)."""
    row = await qstore.draft(draft_id)
    if row is None:
        raise QuizError(f"没有编号为 {draft_id} 的草稿 / no draft #{draft_id}")
    if row["status"] != "pending":
        raise QuizError(f"草稿 #{draft_id} 已处理（{row['status']}）/ draft #{draft_id} is already {row['status']}")
    qid = generated_id(row["topic"], draft_id)
    raw = {**row["payload"], "id": qid, "topic": row["topic"]}
    try:
        q = check_generated(raw, f"store:quiz_generated#{draft_id}")
    except BankError as e:
        raise QuizError(str(e)) from None
    if not await qstore.decide_draft(draft_id, status="approved", by=by, now=(now or utc_now()).timestamp(),
                                     question_id=qid):
        raise QuizError(f"草稿 #{draft_id} 已被他人处理 / draft #{draft_id} was decided meanwhile")
    return q


async def reject(qstore: QuizStore, draft_id: int, *, by: str | None = None, note: str | None = None,
                 now: datetime | None = None) -> None:
    if not await qstore.decide_draft(draft_id, status="rejected", by=by, now=(now or utc_now()).timestamp(),
                                     note=note):
        raise QuizError(f"没有待审的草稿 #{draft_id} / no pending draft #{draft_id}")
