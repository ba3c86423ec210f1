from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from bot.roadmap import TOPIC_SLUGS, RoadmapError, parse, roadmap_json
from tests.conftest import clean_env, run_cli


def test_roadmap_json_covers_quickstart_and_every_topic(tmp_path: Path) -> None:
    r = run_cli(["roadmap", "--json"], clean_env(tmp_path))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc == json.loads(json.dumps(roadmap_json()))
    steps = doc["steps"]
    assert [s["title"] for s in steps[:4]] == ["基础认知", "训练机制", "API 应用", "部署实战"]
    assert {q for s in steps for q in s["quiz_topics"]} == set(TOPIC_SLUGS)
    for s in steps:
        assert {"id", "title", "goals", "tasks", "notes", "quiz_topics", "commands"} <= s.keys()
        assert s["tasks"] and all(t["title"] and t["output"] for t in s["tasks"])
        for note in s["notes"]:  # every linked note exists in the package
            assert (resources.files("prompts") / note).is_file(), note
        for topic in s["quiz_topics"]:  # and every quiz topic has questions
            assert (resources.files("prompts") / "quiz" / f"{topic}.yaml").is_file(), topic


@pytest.mark.parametrize(
    ("raw", "message"),
    [({"steps": [{"id": "x", "title": "t", "tasks": []}]}, "no tasks"),
     ({"steps": [{"id": "x", "title": "t", "tasks": [{"id": "a", "title": "b"}], "notes": ["knowledge/nope.md"]}]},
      "does not exist"),
     ({"steps": [{"id": "x", "title": "t", "tasks": [{"id": "a", "title": "b"}], "quiz_topics": ["cooking"]}]},
      "unknown quiz topic")],
)
def test_malformed_roadmap_is_rejected_naming_the_step(raw: dict, message: str) -> None:
    with pytest.raises(RoadmapError, match=message) as e:
        parse(raw)
    assert "step x" in str(e.value)
