"""`studybot classify` / `classify train` / `summarize`: JSONL (or plain lines) in, one row out per row, in order."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import clean_env, run_cli


def test_classify_rows_in_order_with_valid_labels(tmp_path: Path) -> None:
    stdin = '{"title": "国足 2:0 战胜对手晋级世界杯"}\n央行宣布下调存款准备金率\n{"word": "新款电动车发布"}\n'
    r = run_cli(["classify", "--json", "--provider", "offline"], clean_env(tmp_path), stdin=stdin)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["label"] for row in rows] == ["体育", "财经", "汽车"]
    assert all(0 <= row["confidence"] <= 1 for row in rows)


def test_classify_train_then_use(tmp_path: Path) -> None:
    f = tmp_path / "train.jsonl"
    f.write_text('{"title":"国足战胜对手","label":"体育"}\n{"title":"央行降准","label":"财经"}\n', encoding="utf-8")
    env = clean_env(tmp_path / "data")
    r = run_cli(["classify", "train", str(f)], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title":"x","label":"烹饪"}\n{"title":"y","label":"体育"}\n', encoding="utf-8")
    r = run_cli(["classify", "train", str(bad)], env)
    assert r.returncode == 1 and "烹饪" in r.stderr and "Traceback" not in r.stderr


def test_summarize_from_input_file(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    article = "北京今天发布暴雨预警，各地做好防汛准备。气象台表示，降雨将持续到周五，累计降雨量可达120毫米。"
    f.write_text(json.dumps({"title": "暴雨预警", "article": article}, ensure_ascii=False) + "\n", encoding="utf-8")
    r = run_cli(["summarize", "--json", "--max-chars", "60", "--input", str(f)], clean_env(tmp_path))
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["summary"] and len(row["summary"]) <= 60 and row["summary"] in article + "…"


def test_missing_input_file_is_a_clear_error(tmp_path: Path) -> None:
    r = run_cli(["summarize", "--input", str(tmp_path / "nope.jsonl")], clean_env(tmp_path))
    assert r.returncode != 0 and "nope.jsonl" in r.stderr and "Traceback" not in r.stderr
