"""The command-line contracts of DESIGN §3, driven as a user would: a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import clean_env, run_cli

COMMANDS = ["chat", "run", "ask", "classify", "summarize", "digest", "quiz", "kb", "providers", "compare",
            "stats", "report", "roadmap"]


def test_help_lists_every_command(tmp_path: Path) -> None:
    r = run_cli(["--help"], clean_env(tmp_path))
    assert r.returncode == 0
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert set(COMMANDS) <= listed
    for group, subs in {"kb": ["index", "search"], "providers": ["list", "check"], "classify": ["train"],
                        "quiz": ["bank"]}.items():
        out = run_cli([group, "--help"], clean_env(tmp_path)).stdout
        for sub in subs:
            assert f"  {sub}" in out


def test_piped_chat_explains_lora_and_exits(kb_data_dir: Path) -> None:
    r = run_cli(["chat"], clean_env(kb_data_dir), stdin="什么是LoRA？\n")
    assert r.returncode == 0, r.stderr
    assert "低秩" in r.stdout or "low-rank" in r.stdout.lower()
    assert "离线" in r.stdout  # says plainly that it is offline
    assert "knowledge/sft_peft.md" in r.stdout  # and which notes it used
    assert "Traceback" not in r.stderr


def test_piped_chat_runs_each_line_and_quits(kb_data_dir: Path) -> None:
    r = run_cli(["chat"], clean_env(kb_data_dir), stdin="/help\n你好\n/quit\n什么是RoPE？\n")
    assert r.returncode == 0
    assert "/ask" in r.stdout and "学伴" in r.stdout
    assert "旋转位置编码" not in r.stdout  # the line after /quit is not answered


def test_ask_offline_json_shape(kb_data_dir: Path) -> None:
    r = run_cli(["ask", "什么是注意力机制", "--provider", "offline", "--json"], clean_env(kb_data_dir))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout carries only the JSON document
    assert {"answer", "provider", "sources", "tools", "attempts", "latency_ms"} <= doc.keys()
    assert doc["provider"] == "offline"
    assert doc["sources"] and {"title", "path", "section", "score", "snippet"} <= doc["sources"][0].keys()
    assert "注意力" in doc["answer"][:500]
    assert doc["attempts"] == [{"provider": "offline", "outcome": "ok", "error_kind": None, "error_code": None,
                                "latency_ms": doc["attempts"][0]["latency_ms"]}]


def test_wrong_setting_is_one_line_without_traceback(tmp_path: Path) -> None:
    r = run_cli(["ask", "你好", "--json"], clean_env(tmp_path, STUDYBOT_PROVIDERS="nosuch"))
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "STUDYBOT_PROVIDERS" in lines[0] and "offline" in lines[0] and "qwen" in lines[0]
    assert r.stdout == ""


def test_missing_key_for_a_chosen_provider_is_named(tmp_path: Path) -> None:
    r = run_cli(["ask", "你好"], clean_env(tmp_path, STUDYBOT_PROVIDERS="qwen"))
    assert r.returncode != 0
    assert "DASHSCOPE_API_KEY" in r.stderr and "Traceback" not in r.stderr


def test_unknown_provider_flag(kb_data_dir: Path) -> None:
    r = run_cli(["ask", "你好", "--provider", "nosuch"], clean_env(kb_data_dir))
    assert r.returncode != 0 and "--provider" in r.stderr and "Traceback" not in r.stderr


def test_providers_list_json(tmp_path: Path) -> None:
    r = run_cli(["providers", "list", "--json"], clean_env(tmp_path, DASHSCOPE_API_KEY="sk-secret-value"))
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["chain"] == ["qwen", "offline"]
    names = {p["name"] for p in doc["providers"]}
    assert {"spark", "spark_ws", "ernie", "qwen", "vllm", "ollama", "openai", "offline"} <= names
    assert "sk-secret-value" not in r.stdout + r.stderr  # keys are never printed


def test_run_without_token_is_a_clear_message(tmp_path: Path) -> None:
    r = run_cli(["run"], clean_env(tmp_path))
    assert r.returncode != 0
    assert "DISCORD_TOKEN" in r.stderr and "studybot chat" in r.stderr


def test_kb_search_json(kb_data_dir: Path) -> None:
    r = run_cli(["kb", "search", "KV cache 显存", "--json"], clean_env(kb_data_dir))
    assert r.returncode == 0
    rows = json.loads(r.stdout)
    assert rows and all({"title", "path", "section", "score", "snippet"} <= row.keys() for row in rows)
    assert rows[0]["path"] in ("knowledge/inference.md", "knowledge/quantization.md", "knowledge/deployment.md")


def test_debug_logs_never_contain_keys(kb_data_dir: Path) -> None:
    secret = "sk-THIS-IS-A-SECRET-123456"
    env = clean_env(kb_data_dir, STUDYBOT_LOG_LEVEL="DEBUG", STUDYBOT_PROVIDERS="openai,offline",
                    OPENAI_API_KEY=secret, OPENAI_BASE_URL="http://127.0.0.1:9/v1",
                    STUDYBOT_CONNECT_TIMEOUT_S="0.5")
    r = run_cli(["ask", "什么是LoRA", "--json"], env)
    assert r.returncode == 0, r.stderr
    assert "DEBUG" in r.stderr  # debug logging really was on
    assert secret not in r.stderr and secret not in r.stdout
    doc = json.loads(r.stdout)
    assert [a["provider"] for a in doc["attempts"]][-1] == "offline"
    assert doc["attempts"][0]["error_kind"] == "unavailable"


def test_run_check_json_builds_the_bot_without_connecting(tmp_path: Path) -> None:
    r = run_cli(["run", "--check", "--json"], clean_env(tmp_path))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    names = {c["name"] for c in doc["commands"]}
    assert {"ask", "chat", "model", "compare", "summarize", "classify", "digest", "quiz", "stats", "help", "kb",
            "forget", "export"} <= names
    assert doc["allowed_mentions"]["everyone"] is False
    assert doc["allowed_mentions"]["roles"] is False and doc["allowed_mentions"]["users"] is False
    assert doc["intents"]["message_content"] is False
