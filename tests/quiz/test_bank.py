"""The built-in bank is valid and complete; malformed banks are refused naming file and question."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from bot.quiz.bank import DIFFICULTIES, TOPICS, BankError, load_bank
from bot.quiz.terminal import dump_bank_json

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ROOT / "prompts"


def _headings(path: Path) -> set[str]:
    # an independent reading of the note: every Markdown heading outside code fences
    out, fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        elif not fence and (m := re.match(r"^#{1,6}\s+(.+?)\s*$", line)):
            out.add(m.group(1))
    return out


def test_bank_dump_has_200_valid_distinct_questions_with_real_refs() -> None:
    rows = json.loads(json.dumps(dump_bank_json(), ensure_ascii=False))  # serialisable as is
    assert len(rows) >= 200
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["question"] for r in rows}) == len(rows)
    per_topic = {t: 0 for t in TOPICS}
    for r in rows:
        assert set(r) == {"id", "topic", "question", "options", "answer", "explanation", "difficulty", "ref"}
        assert r["topic"] in TOPICS and r["difficulty"] in DIFFICULTIES
        assert len(r["options"]) == 4 and len(set(r["options"])) == 4 and all(o.strip() for o in r["options"])
        assert isinstance(r["answer"], int) and 0 <= r["answer"] <= 3
        assert r["question"].strip() and r["explanation"].strip()
        note = PROMPTS / r["ref"]["path"]
        assert note.is_file(), r["id"]
        assert r["ref"]["heading"] in _headings(note), (r["id"], r["ref"])
        per_topic[r["topic"]] += 1
    assert min(per_topic.values()) >= 8, per_topic


def test_bank_has_the_calculation_questions() -> None:
    texts = [r["question"] for r in dump_bank_json()]
    for pattern in (r"LoRA.*\d", r"KV Cache.*(\d|FP16)", r"Chinchilla", r"(温度|temperature).*T\s*=\s*\d"):
        assert any(re.search(pattern, t) for t in texts), pattern


GOOD = """\
  - id: t-ok
    question: "奖励模型输出什么？"
    options: ["一个标量分数", "一段文字", "一个词表分布", "一个向量"]
    answer: 0
    explanation: "奖励模型把语言模型头换成输出单个标量的线性头。"
    difficulty: easy
    ref: {path: knowledge/rlhf.md, heading: "奖励模型与 Bradley–Terry 损失"}
"""


def _bank_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "quiz"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


def test_loader_reads_a_custom_dir(tmp_path: Path) -> None:
    bank = load_bank(_bank_dir(tmp_path, {"rlhf.yaml": "topic: rlhf\nquestions:\n" + GOOD}), PROMPTS)
    assert len(bank) == 1 and bank.get("t-ok").answer_text == "一个标量分数"  # type: ignore[union-attr]


def test_broken_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    d = _bank_dir(tmp_path, {"rlhf.yaml": "topic: rlhf\nquestions:\n  - id: x\n    options: [a, b\n"})
    with pytest.raises(BankError) as e:
        load_bank(d, PROMPTS)
    msg = str(e.value)
    assert "quiz/rlhf.yaml" in msg and "YAML" in msg and "line" in msg


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("options", '["一个标量分数", "一段文字", "一个词表分布"]', "4"),
    ("options", '["一个标量分数", "一段文字", " 一个标量分数 ", "一个向量"]', "distinct"),
    ("answer", "[0, 2]", "exactly one answer"),
    ("answer", "4", "out of range"),
    ("answer", '"A"', "integer index"),
    ("explanation", '""', "missing explanation"),
    ("difficulty", "expert", "difficulty"),
    ("ref", '{path: knowledge/no_such_note.md, heading: "x"}', "does not exist"),
    ("ref", '{path: ../pyproject.toml, heading: "x"}', "does not exist"),
    ("ref", '{path: knowledge/rlhf.md, heading: "一个不存在的标题"}', "heading not found"),
    ("anwser", "0", "unknown field"),
])
def test_schema_errors_name_file_and_question(tmp_path: Path, field: str, value: str, needle: str) -> None:
    bad = re.sub(rf"(?m)^    {field}: .*$", f"    {field}: {value}", GOOD.replace("t-ok", "t-bad"))
    if field not in GOOD:
        bad += f"    {field}: {value}\n"
    d = _bank_dir(tmp_path, {"rlhf.yaml": "topic: rlhf\nquestions:\n" + GOOD + bad})
    with pytest.raises(BankError) as e:
        load_bank(d, PROMPTS)
    msg = str(e.value)
    assert "quiz/rlhf.yaml: t-bad:" in msg and needle in msg, msg
    assert "t-ok" not in msg  # the good question is not blamed
    assert len(e.value.problems) == 1


def test_question_without_id_is_named_by_index_and_unknown_topic_refused(tmp_path: Path) -> None:
    no_id = GOOD.replace("  - id: t-ok\n    question", "  - question")
    d = _bank_dir(tmp_path, {"a.yaml": "topic: rlhf\nquestions:\n" + GOOD + no_id,
                             "b.yaml": "topic: cooking\nquestions:\n" + GOOD})
    with pytest.raises(BankError) as e:
        load_bank(d, PROMPTS)
    msg = str(e.value)
    assert "quiz/a.yaml: 第 2 题 / question #2: id" in msg
    assert "quiz/b.yaml: 未知主题 / unknown topic 'cooking'" in msg


def test_duplicate_ids_across_files_are_refused(tmp_path: Path) -> None:
    d = _bank_dir(tmp_path, {"a.yaml": "topic: rlhf\nquestions:\n" + GOOD,
                             "b.yaml": "topic: sft_peft\nquestions:\n" + GOOD})
    with pytest.raises(BankError, match=r"quiz/b\.yaml: t-ok: .*duplicate id \(also in quiz/a\.yaml\)"):
        load_bank(d, PROMPTS)


def test_a_reference_to_a_note_missing_from_this_prompts_root(tmp_path: Path) -> None:
    # a prompts root whose knowledge folder lacks rlhf.md: the same question is now unresolvable
    root = tmp_path / "prompts"
    (root / "knowledge").mkdir(parents=True)
    shutil.copy(PROMPTS / "knowledge" / "sft_peft.md", root / "knowledge" / "sft_peft.md")
    _bank = _bank_dir(root, {"rlhf.yaml": "topic: rlhf\nquestions:\n" + GOOD})
    with pytest.raises(BankError, match=re.escape("t-ok: 引用的笔记不存在 / referenced note does not exist: 'knowledge/rlhf.md'")):
        load_bank(_bank, root)
