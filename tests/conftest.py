"""Shared fixtures: every test runs with a clean environment, no `.env`, its own data dir."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# property tests explore the same examples on every run, so CI cannot fail on a lucky draw
hypothesis_settings.register_profile("studybot", derandomize=True, database=None)
hypothesis_settings.load_profile("studybot")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

_PREFIXES = (
    "STUDYBOT_", "DISCORD_", "SPARK_", "QIANFAN_", "DASHSCOPE_", "OPENAI_", "VLLM_", "OLLAMA_", "ERNIE_", "QWEN_",
    "WEIBO_", "PEOPLE_DAILY", "NEWS_RSS", "FETCH_", "EMBEDDING_MODEL", "TOOL_MAX", "URL_ALLOW", "PRICES_FILE",
    "DIGEST_", "RATE_LIMIT", "SERVER_DAILY", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
)


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The process environment without any studybot setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PREFIXES)}
    env.update({"STUDYBOT_ENV_FILE": "none", "STUDYBOT_DATA_DIR": str(data_dir), "NO_PROXY": "*"})
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for k in list(os.environ):
        if k.startswith(_PREFIXES):
            monkeypatch.delenv(k, raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("STUDYBOT_ENV_FILE", "none")
    monkeypatch.setenv("STUDYBOT_DATA_DIR", str(data))
    monkeypatch.setenv("NO_PROXY", "*")
    return data


@pytest.fixture(scope="session")
def kb_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose built-in knowledge index is already built (once per test session)."""
    from bot.knowledge.embed import get_embedder
    from bot.knowledge.index import IndexStore

    d = tmp_path_factory.mktemp("kb")
    IndexStore(d, get_embedder()).ensure()
    return d


def run_cli(args: Sequence[str], env: dict[str, str], stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `studybot ARGS` as a user would, in a subprocess."""
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


async def arun_cli(args: Sequence[str], env: dict[str, str], stdin: str | None = None,
                   limit_s: float = 120) -> tuple[int, str, str]:
    """Same, without blocking the event loop (tests that serve loopback stubs in-process)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), limit_s)
    return proc.returncode or 0, out.decode(), err.decode()


def json_of(stdout: str) -> object:
    return json.loads(stdout)
