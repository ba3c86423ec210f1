"""The question bank: `prompts/quiz/*.yaml` (shipped in the wheel) plus approved generated questions.

Every question is schema-checked at load: 4 distinct options, exactly one answer index, an
explanation, a difficulty, a known topic, and a reference to a note file and heading that exist.
A bad file is refused as a whole with messages that name the file and the question.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import yaml

TOPICS: tuple[str, ...] = (
    "quickstart", "ml_math", "python_ml", "neural_nets", "nlp", "llm_architecture", "positional_encoding",
    "instruction_data", "pretraining", "sft_peft", "rlhf", "evaluation", "quantization", "inference", "rag",
    "prompting", "llm_apis", "deployment",
)
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
LETTERS = "ABCD"
# ids travel in Discord custom_ids (`quiz:<session>:<id>:<choice>`, 100 chars max): no colons, short
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,48}$")
_REF_RE = re.compile(r"^knowledge/[A-Za-z0-9_.-]+\.md$")
_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)(?:\s+#+)?\s*$")
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_ALLOWED_KEYS = {"id", "question", "options", "answer", "explanation", "difficulty", "ref", "topic", "tags"}

_yaml_loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    topic: str
    question: str
    options: tuple[str, str, str, str]
    answer: int
    explanation: str
    difficulty: str
    ref_path: str
    ref_heading: str
    source: str = "bank"  # "bank" or "generated"

    @property
    def answer_text(self) -> str:
        return self.options[self.answer]

    @property
    def ref(self) -> dict[str, str]:
        return {"path": self.ref_path, "heading": self.ref_heading}

    def as_dict(self) -> dict[str, Any]:
        """DESIGN §3 shape of `studybot quiz bank --json`."""
        return {"id": self.id, "topic": self.topic, "question": self.question, "options": list(self.options),
                "answer": self.answer, "explanation": self.explanation, "difficulty": self.difficulty,
                "ref": self.ref}


@dataclass(frozen=True, slots=True)
class Problem:
    where: str  # file name or "store:quiz_generated#7"
    item: str  # "rlhf-03" or "#4" (1-based index when the id is missing)
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.item}: {self.message}" if self.item else f"{self.where}: {self.message}"


class BankError(ValueError):
    """A malformed bank file or question; the message names the file and question."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = [str(p) for p in self.problems[:20]]
        more = len(self.problems) - len(shown)
        if more > 0:
            shown.append(f"… 另有 {more} 处 / {more} more")
        super().__init__("题库有误 / invalid question bank:\n  " + "\n  ".join(shown))


# ---- notes and headings ------------------------------------------------------------------------------

def prompts_root() -> Traversable:
    return resources.files("prompts")


def headings_of(text: str) -> set[str]:
    """Markdown headings of a note (outside code fences), as written."""
    found: set[str] = set()
    in_code = False
    for line in text.splitlines():
        if _FENCE_RE.match(line):
            in_code = not in_code
            continue
        m = None if in_code else _HEADING_RE.match(line)
        if m:
            found.add(m.group(2).strip())
    return found


@lru_cache(maxsize=128)
def _note_headings_cached(rel: str, root: Traversable) -> frozenset[str] | None:
    node = root
    for part in rel.split("/"):
        node = node / part
    if not node.is_file():
        return None
    return frozenset(headings_of(node.read_text(encoding="utf-8")))


def note_headings(rel: str, root: Traversable | None = None) -> frozenset[str] | None:
    """Headings of `knowledge/<x>.md` under the prompts root, or None when the file is missing."""
    root = root or prompts_root()
    return _note_headings_cached(rel, root)


# ---- one question ---------------------------------------------------------------------------------------

def _norm(s: str) -> str:
    return " ".join(s.split()).casefold()


def check_question(raw: Any, *, where: str, index: int, topic: str | None,
                   headings: Callable[[str], frozenset[str] | None], source: str = "bank") -> Question | list[Problem]:
    """A Question, or the list of problems found (all of them, not just the first)."""
    item = f"第 {index + 1} 题 / question #{index + 1}"
    if not isinstance(raw, Mapping):
        return [Problem(where, item, "不是映射 / is not a mapping of fields")]
    qid = raw.get("id")
    if isinstance(qid, str) and qid.strip():
        item = qid.strip()
    probs: list[Problem] = []

    def bad(msg: str) -> None:
        probs.append(Problem(where, item, msg))

    if not isinstance(qid, str) or not _ID_RE.match(qid.strip()):
        bad(f"id 缺失或不合法（字母、数字、_.-，最多 48 字符）/ missing or invalid id {qid!r}")
    unknown = sorted(set(map(str, raw)) - _ALLOWED_KEYS)
    if unknown:
        bad(f"未知字段 / unknown field(s): {', '.join(unknown)}")
    t = raw.get("topic", topic)
    if t not in TOPICS:
        bad(f"未知主题 / unknown topic {t!r}; allowed: {', '.join(TOPICS)}")
    text = raw.get("question")
    if not isinstance(text, str) or not text.strip():
        bad("题干为空 / empty question text")
    opts = raw.get("options")
    if not isinstance(opts, list) or len(opts) != 4 or not all(isinstance(o, str) and o.strip() for o in opts):
        n = len(opts) if isinstance(opts, list) else 0
        bad(f"需要 4 个非空文字选项 / needs exactly 4 non-empty text options (got {n})")
    elif len({_norm(o) for o in opts}) != 4:
        bad("选项有重复 / the 4 options must be distinct")
    ans = raw.get("answer")
    if isinstance(ans, list):
        bad(f"只能有一个正确答案 / exactly one answer index expected, got {len(ans)}: {ans!r}")
    elif isinstance(ans, bool) or not isinstance(ans, int):
        bad(f"answer 必须是 0-3 的整数 / answer must be one integer index 0-3, got {ans!r}")
    elif not 0 <= ans <= 3:
        bad(f"answer 超出范围 / answer index {ans} out of range 0-3")
    expl = raw.get("explanation")
    if not isinstance(expl, str) or not expl.strip():
        bad("缺少解析 / missing explanation")
    diff = raw.get("difficulty")
    if diff not in DIFFICULTIES:
        bad(f"难度不合法 / difficulty {diff!r} not in {', '.join(DIFFICULTIES)}")
    ref = raw.get("ref")
    path = heading = ""
    if not isinstance(ref, Mapping) or not isinstance(ref.get("path"), str) or not isinstance(ref.get("heading"), str):
        bad("缺少引用 / missing ref: {path: knowledge/<slug>.md, heading: ...}")
    else:
        path, heading = ref["path"].strip(), ref["heading"].strip()
        found = headings(path) if _REF_RE.match(path) else None
        if found is None:
            bad(f"引用的笔记不存在 / referenced note does not exist: {path!r}")
        elif heading not in found:
            bad(f"笔记 {path} 中没有标题 / heading not found in {path}: {heading!r}")
    if probs:
        return probs
    assert isinstance(opts, list) and isinstance(ans, int)
    return Question(id=str(qid).strip(), topic=str(t), question=str(text).strip(),
                    options=(opts[0].strip(), opts[1].strip(), opts[2].strip(), opts[3].strip()), answer=ans,
                    explanation=str(expl).strip(), difficulty=str(diff), ref_path=path, ref_heading=heading,
                    source=source)


# ---- files and the bank ---------------------------------------------------------------------------------

def parse_file(name: str, text: str, headings: Callable[[str], frozenset[str] | None]) -> tuple[list[Question],
                                                                                                 list[Problem]]:
    try:
        doc = yaml.load(text, Loader=_yaml_loader)  # a safe loader (C or pure Python)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (行 / line {mark.line + 1})" if mark is not None else ""
        return [], [Problem(name, "", f"YAML 无法解析 / not valid YAML{at}: {getattr(e, 'problem', e)}")]
    if not isinstance(doc, Mapping) or not isinstance(doc.get("questions"), list):
        return [], [Problem(name, "", "需要 `topic:` 与 `questions:` 列表 / expected `topic:` and a `questions:` list")]
    topic = doc.get("topic")
    if topic not in TOPICS:
        return [], [Problem(name, "", f"未知主题 / unknown topic {topic!r}; allowed: {', '.join(TOPICS)}")]
    out: list[Question] = []
    probs: list[Problem] = []
    for i, raw in enumerate(doc["questions"]):
        res = check_question(raw, where=name, index=i, topic=topic, headings=headings)
        if isinstance(res, Question):
            out.append(res)
        else:
            probs.extend(res)
    return out, probs


class Bank:
    """Validated questions by id and by topic. Duplicate ids are refused."""

    def __init__(self, questions: Iterable[Question]) -> None:
        self.questions: list[Question] = []
        self._by_id: dict[str, Question] = {}
        dups: list[Problem] = []
        for q in questions:
            if q.id in self._by_id:
                dups.append(Problem(q.topic, q.id, "重复的题目 id / duplicate question id"))
                continue
            self._by_id[q.id] = q
            self.questions.append(q)
        if dups:
            raise BankError(dups)

    def __len__(self) -> int:
        return len(self.questions)

    def __contains__(self, qid: object) -> bool:
        return qid in self._by_id

    def get(self, qid: str) -> Question | None:
        return self._by_id.get(qid)

    def topic(self, slug: str) -> list[Question]:
        return [q for q in self.questions if q.topic == slug]

    def counts(self) -> dict[str, int]:
        return {t: sum(1 for q in self.questions if q.topic == t) for t in TOPICS}

    def with_extra(self, extra: Iterable[Question]) -> Bank:
        return Bank([*self.questions, *extra])

    def dump(self) -> list[dict[str, Any]]:
        return [q.as_dict() for q in self.questions]


def load_bank(quiz_dir: Traversable | None = None, root: Traversable | None = None) -> Bank:
    """Load and check every `*.yaml` of the quiz dir; refs resolve against `root` (prompts/)."""
    root = root or prompts_root()
    quiz_dir = quiz_dir or (root / "quiz")
    files = sorted((f for f in quiz_dir.iterdir() if f.name.endswith((".yaml", ".yml"))), key=lambda f: f.name)
    questions: list[Question] = []
    probs: list[Problem] = []
    seen: dict[str, str] = {}
    for f in files:
        name = f"quiz/{f.name}"
        qs, ps = parse_file(name, f.read_text(encoding="utf-8"), lambda p: note_headings(p, root))
        probs.extend(ps)
        for q in qs:
            if q.id in seen:
                probs.append(Problem(name, q.id, f"重复的题目 id / duplicate id (also in {seen[q.id]})"))
                continue
            seen[q.id] = name
            questions.append(q)
    if probs:
        raise BankError(probs)
    return Bank(questions)


@lru_cache(maxsize=1)
def default_bank() -> Bank:
    """The built-in bank (parsed once per process)."""
    return load_bank()


def check_generated(raw: Mapping[str, Any], where: str) -> Question:
    """Check an approved generated question like a bank entry; raise BankError naming it."""
    res = check_question(raw, where=where, index=0, topic=None, headings=note_headings, source="generated")
    if isinstance(res, Question):
        return res
    raise BankError(res)
