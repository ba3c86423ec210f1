"""`studybot providers check` probes each configured provider over real loopback HTTP."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import arun_cli, clean_env
from tests.stubs import openai_wire as W
from tests.stubs.http_server import Script, StubServer


async def test_providers_check_reports_each_status(tmp_path: Path) -> None:
    script = Script({
        "/ok/v1/chat/completions": [W.completion("p")],
        "/auth/v1/chat/completions": [W.dashscope_error(401, "invalid_api_key")],
        "/busy/v1/chat/completions": [W.qianfan_error(429, "rpm_rate_limit_exceeded")],
    })
    async with StubServer(script) as s:
        env = clean_env(tmp_path, STUDYBOT_PROVIDERS="vllm,qwen,ernie,ollama,offline", VLLM_BASE_URL=s.url + "/ok/v1",
                        VLLM_MODEL="m", DASHSCOPE_API_KEY="k1", QWEN_BASE_URL=s.url + "/auth/v1",
                        QIANFAN_API_KEY="k2", ERNIE_BASE_URL=s.url + "/busy/v1",
                        OLLAMA_BASE_URL="http://127.0.0.1:9/v1", STUDYBOT_CONNECT_TIMEOUT_S="0.5")
        code, out, err = await arun_cli(["providers", "check", "--json"], env)
    assert code == 0, err
    status = {r["name"]: r["status"] for r in json.loads(out)}
    assert status == {"vllm": "ok", "qwen": "auth", "ernie": "rate_limited", "ollama": "unreachable",
                      "offline": "ok"}
    # exactly one tiny request per provider: the check never retries
    assert len(s.requests) == 3
    assert all(r.json()["max_tokens"] == 1 for r in s.requests)
