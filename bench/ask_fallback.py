"""Issue 3, must show 1, timed as a user sees it: `studybot ask "你好" --json` with
STUDYBOT_PROVIDERS=spark,qwen,vllm where spark answers 200 + code 11202, qwen 503 and vllm streams.
Start-up included; the built-in index is built first (`studybot kb index`). Prints `name: value` lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import arun_cli, clean_env  # noqa: E402
from tests.providers.test_ask_fallback import Stamped, env_for, serve_acceptance  # noqa: E402
from tests.stubs.http_server import StubServer  # noqa: E402

RUNS = 5


async def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="bench-ask-"))
    code, _, err = await arun_cli(["kb", "index"], clean_env(data))
    assert code == 0, err
    walls, spans = [], []
    for _ in range(RUNS):
        script = Stamped()
        serve_acceptance(script)
        async with StubServer(script) as server:
            t0 = time.perf_counter()
            code, out, err = await arun_cli(["ask", "你好", "--json"], env_for(data, server.url))
            walls.append(time.perf_counter() - t0)
        doc = json.loads(out)
        assert code == 0 and doc["provider"] == "vllm", err
        spans.append(script.stamps[-1][0] - script.stamps[0][0])
    print(f"ask_fallback_runs: {RUNS}")
    print(f"ask_fallback_wall_s_median: {statistics.median(walls):.2f}")
    print(f"ask_fallback_wall_s_max: {max(walls):.2f}")
    print(f"fallback_span_s_median: {statistics.median(spans):.2f}  # first spark request to the vllm request")
    print(f"attempts: {[a['provider'] + ':' + str(a['error_kind'] or 'ok') for a in doc['attempts']]}")
    print("ask_fallback_target_s: 5")
    print(f"load_average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
