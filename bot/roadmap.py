"""The study roadmap as data (prompts/roadmap.yaml): steps in order, each with goals, hands-on
tasks and expected outputs, linked notes, quiz topics and the studybot commands that help.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

TOPIC_SLUGS = (
    "quickstart", "ml_math", "python_ml", "neural_nets", "nlp", "llm_architecture", "positional_encoding",
    "instruction_data", "pretraining", "sft_peft", "rlhf", "evaluation", "quantization", "inference", "rag",
    "prompting", "llm_apis", "deployment",
)


class RoadmapError(ValueError):
    """prompts/roadmap.yaml is malformed; the message names the step."""


@dataclass(frozen=True)
class Task:
    id: str
    title: str
    output: str
    commands: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    stage: str
    goals: list[str]
    tasks: list[Task]
    notes: list[str]
    quiz_topics: list[str]
    commands: list[str]
    est_hours: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _note_exists(path: str) -> bool:
    node = resources.files("prompts")
    for part in path.split("/"):
        node = node / part
    return node.is_file()


def parse(raw: dict[str, Any]) -> list[Step]:
    steps: list[Step] = []
    seen: set[str] = set()
    for i, s in enumerate(raw.get("steps") or []):
        sid = str(s.get("id") or f"#{i + 1}")
        if sid in seen:
            raise RoadmapError(f"roadmap step {sid}: duplicate id")
        seen.add(sid)
        tasks = [Task(str(t["id"]), str(t["title"]), str(t.get("output", "")), list(t.get("commands") or []))
                 for t in s.get("tasks") or []]
        if not tasks:
            raise RoadmapError(f"roadmap step {sid}: no tasks")
        for n in s.get("notes") or []:
            if not _note_exists(n):
                raise RoadmapError(f"roadmap step {sid}: note {n} does not exist")
        for q in s.get("quiz_topics") or []:
            if q not in TOPIC_SLUGS:
                raise RoadmapError(f"roadmap step {sid}: unknown quiz topic {q!r}")
        steps.append(Step(sid, str(s["title"]), str(s.get("stage", "")), list(s.get("goals") or []), tasks,
                          list(s.get("notes") or []), list(s.get("quiz_topics") or []),
                          list(s.get("commands") or []), float(s.get("est_hours") or 0)))
    return steps


@lru_cache(maxsize=1)
def load() -> tuple[Step, ...]:
    text = (resources.files("prompts") / "roadmap.yaml").read_text(encoding="utf-8")
    return tuple(parse(yaml.safe_load(text)))


def roadmap_json() -> dict[str, Any]:
    """The DESIGN §3 shape: {"steps":[{"id","title","goals","tasks","notes","quiz_topics","commands"}]}."""
    return {"steps": [s.as_dict() for s in load()]}


def render_text(steps: tuple[Step, ...] | None = None) -> str:
    lines = []
    for n, s in enumerate(steps or load(), 1):
        lines.append(f"{n:>2}. [{s.id}] {s.title}  (~{s.est_hours:g} h)  · 测验 quiz: {', '.join(s.quiz_topics)}")
    return "\n".join(lines)
