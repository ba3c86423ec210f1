"""Router overhead per streamed reply, against the bare `openai` SDK, on the same loopback stub.

    .venv/bin/python bench/providers.py [--quick] [--runs N] [--chunks N]

A stub OpenAI-compatible server runs in a separate process (this file with `--serve`) and
streams every reply as `--chunks` SSE chunks (200 by default). The client side measures, at
concurrency 1 and 200, replies per second and per-reply latency (p50, p99) for:

- `router`: `Router` over `OpenAICompatProvider` (vLLM preset) with a `BufferedRecorder`
  writing to a no-op async sink: what the product does for every reply. The SDK makes the
  request; the provider reads the event stream itself into plain dicts (providers/sse.py)
  instead of the SDK's pydantic chunk objects;
- `bare`: `openai.AsyncOpenAI(max_retries=0)`, `stream=True`, iterating chunks and joining
  `delta.content`: the least any client can do;
- `bare2`: a second, independent bare client: bare2/bare is the noise floor of the method.

The three sides run interleaved, `--runs` rounds, after a warm-up; at concurrency 1 they take
turns reply by reply (so a burst of outside load hits every side alike), at 200 run by run with
the order rotated every round. Each figure is the median over rounds. The client and the stub are
pinned to separate CPUs when there are two (`--no-pin` to turn that off). `cpu_ms_per_reply`
(process CPU time / replies) is the figure least disturbed by other load on the machine. Then, without I/O, `micro.*` splits one
reply's CPU cost: the SDK decoding the chunks (JSON + pydantic), the provider's own decoding of
the same bytes (lines + JSON), what OpenAICompatProvider adds over a bare loop on the decoded
chunks, and what Router adds over iterating a provider directly.

Printed as `name: value` lines on stdout, each router/bare ratio next to the bare2/bare noise
floor; progress goes to stderr. No network: loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MESSAGES = [{"role": "system", "content": "你是学习助手。"}, {"role": "user", "content": "用三句话解释注意力机制。"}]
PIECE = "注意力"  # each chunk carries a few characters, like a real token stream


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the stub (separate process) --------------------------------------------------------------------


async def serve(chunks: int) -> None:
    from tests.stubs.http_server import Reply, Request, StubServer
    from tests.stubs.openai_wire import models_list, text_stream

    reply = text_stream([f"{PIECE}{i % 10}" for i in range(chunks)], model="m")

    def handler(req: Request) -> Reply:
        if req.path.endswith("/models"):
            return models_list("m")
        return reply

    server = await StubServer(handler).start()
    print(f"port {server.port}", flush=True)
    # the parent holds our stdin: when it goes away (even killed), stdin ends and so do we
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    await asyncio.Event().wait()


def start_stub(chunks: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--chunks", str(chunks)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "port":
        proc.kill()
        raise SystemExit(f"the stub did not start: {line!r}")
    return proc, f"http://127.0.0.1:{line[1]}"


# ---- the three clients --------------------------------------------------------------------------------

ReplyFn = Callable[[], Awaitable[str]]


def _timeouts() -> Any:
    from providers.openai_compat import Timeouts

    # at concurrency 200 the client's event loop is saturated: a connect that the kernel finished
    # long ago may wait seconds for its turn. Generous limits, the same on every side.
    return Timeouts(connect=120.0, first_token=600.0, total=3600.0)


TIMEOUTS = _timeouts()


def make_router(url: str) -> tuple[ReplyFn, Callable[[], Awaitable[None]]]:
    from providers.openai_compat import OpenAICompatProvider
    from providers.presets import PRESETS
    from providers.records import BufferedRecorder, CallRecord
    from providers.router import Router
    from providers.types import TextDelta

    async def sink(batch: list[CallRecord]) -> None:
        return None

    recorder = BufferedRecorder(sink)
    preset = replace(PRESETS["vllm"], base_url=url + "/v1", default_model="m")
    router = Router({"vllm": OpenAICompatProvider(preset, api_key=None, timeouts=TIMEOUTS)}, ["vllm"],
                    recorder=recorder)

    async def one() -> str:
        parts: list[str] = []
        async for ev in router.chat(MESSAGES):
            if type(ev) is TextDelta:
                parts.append(ev.text)
        return "".join(parts)

    async def close() -> None:
        await recorder.aclose()
        await router.aclose()

    return one, close


def make_bare(url: str) -> tuple[ReplyFn, Callable[[], Awaitable[None]]]:
    import openai

    client = openai.AsyncOpenAI(api_key="not-needed", base_url=url + "/v1", max_retries=0,
                                timeout=openai.Timeout(TIMEOUTS.total, connect=TIMEOUTS.connect,
                                                       read=TIMEOUTS.first_token))

    async def one() -> str:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
                                                      stream_options={"include_usage": True})
        parts: list[str] = []
        async for chunk in stream:
            if chunk.choices:
                content = chunk.choices[0].delta.content
                if content:
                    parts.append(content)
        return "".join(parts)

    return one, client.close


# ---- measurement -----------------------------------------------------------------------------------------


async def run(one: ReplyFn, n: int, c: int, expect: str) -> dict[str, float]:
    latencies: list[float] = []
    todo = iter(range(n))

    async def worker() -> None:
        for _ in todo:
            t = time.perf_counter()
            text = await one()
            latencies.append(time.perf_counter() - t)
            if text != expect:
                raise SystemExit(f"wrong reply: {text[:40]!r}...")

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(min(c, n))))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    latencies.sort()
    return {"rps": n / wall, "p50_ms": 1e3 * statistics.median(latencies),
            "p99_ms": 1e3 * latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
            "cpu_ms": 1e3 * cpu / n}


async def run_interleaved(ones: dict[str, ReplyFn], n: int, expect: str) -> dict[str, dict[str, float]]:
    """Concurrency 1, the sides taking turns one reply at a time (order rotated every reply)."""
    names = list(ones)
    lat: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    for i in range(n):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t, c0 = time.perf_counter(), time.process_time()
            text = await ones[name]()
            lat[name].append(time.perf_counter() - t)
            cpu[name] += time.process_time() - c0
            if text != expect:
                raise SystemExit(f"wrong reply: {text[:40]!r}...")
    out = {}
    for name in names:
        xs = sorted(lat[name])
        out[name] = {"rps": n / sum(xs), "p50_ms": 1e3 * statistics.median(xs),
                     "p99_ms": 1e3 * xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))], "cpu_ms": 1e3 * cpu[name] / n}
    return out


async def bench(url: str, chunks: int, runs: int, plan: list[tuple[int, int]]) -> dict[str, float]:
    expect = "".join(f"{PIECE}{i % 10}" for i in range(chunks))
    sides = {"router": make_router(url), "bare": make_bare(url), "bare2": make_bare(url)}
    names = list(sides)
    out: dict[str, float] = {}
    try:
        for name in names:  # warm-up: imports, connection pools, the stub's first replies
            await run(sides[name][0], 20, 10, expect)
        for c, n in plan:
            results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
            for r in range(runs):
                order = names[r % len(names):] + names[:r % len(names)]
                if c == 1:  # reply by reply, so a burst of outside load hits every side alike
                    for name, figures in (await run_interleaved({k: sides[k][0] for k in order}, n, expect)).items():
                        results[name].append(figures)
                else:
                    for name in order:
                        results[name].append(await run(sides[name][0], n, c, expect))
                log(f"c={c} round {r + 1}/{runs}: " + "  ".join(
                    f"{name} {results[name][-1]['rps']:.1f}/s p50 {results[name][-1]['p50_ms']:.1f} ms"
                    for name in names))
            for name in names:
                for key in ("rps", "p50_ms", "p99_ms", "cpu_ms"):
                    out[f"c{c}.{name}.{key}"] = statistics.median(x[key] for x in results[name])
    finally:
        for _, close in sides.values():
            await close()
    return out


# ---- where the time goes, without I/O (robust to a busy machine) -------------------------------------


async def micro(chunks: int, reps: int = 7, replies: int = 40) -> dict[str, float]:
    """Per-reply cost, in microseconds of CPU, of each layer over the same pre-made input:
    the SDK decoding chunks (json + model construction), what `OpenAICompatProvider` adds on top
    of a bare loop over the decoded chunks, and what `Router` adds on top of iterating a provider."""
    from openai.types.chat import ChatCompletionChunk

    from providers.openai_compat import OpenAICompatProvider
    from providers.presets import PRESETS
    from providers.router import Router
    from providers.sse import sse_lines, sse_objects
    from providers.types import Final, TextDelta, Usage
    from tests.stubs.openai_wire import chunk_obj

    objs = [chunk_obj("", model="m")] + [chunk_obj(f"{PIECE}{i % 10}", model="m") for i in range(chunks)]
    objs += [chunk_obj(None, finish="stop", model="m"), chunk_obj(None, usage=(12, chunks), model="m",
                                                                   empty_choices=True)]
    lines = [json.dumps(o, ensure_ascii=False) for o in objs]
    decoded = [json.loads(line) for line in lines]
    body = "".join(f"data: {line}\n\n" for line in lines).encode() + b"data: [DONE]\n\n"
    frames = [body[i:i + 4096] for i in range(0, len(body), 4096)]
    events = [TextDelta(f"{PIECE}{i % 10}") for i in range(chunks)] + [Final("stop", Usage(12, chunks))]
    provider = OpenAICompatProvider(replace(PRESETS["vllm"], default_model="m"), api_key=None)

    async def source(items: list[Any]) -> AsyncIterator[Any]:
        for x in items:
            yield x

    class Fake:
        name, default_model = "fake", "m"

        async def chat(self, messages: Any, **kw: Any) -> AsyncIterator[Any]:
            for ev in events:
                yield ev

    router = Router({"fake": Fake()}, ["fake"], recorder=lambda r: None)  # type: ignore[dict-item]

    def sdk_decode() -> None:
        for line in lines:
            ChatCompletionChunk.construct(**json.loads(line))

    async def own_decode() -> None:  # what OpenAICompatProvider does instead: bytes to dicts
        async for _ in sse_objects(sse_lines(source(frames))):
            pass

    async def bare_loop() -> None:
        parts = []
        async for chunk in source(decoded):
            choices = chunk.get("choices")
            if choices and (choices[0].get("delta") or {}).get("content"):
                parts.append(choices[0]["delta"]["content"])

    async def compat() -> None:
        parts = []
        async for ev in provider._stream(source(decoded), "m", None, float("inf")):
            if type(ev) is TextDelta:
                parts.append(ev.text)

    async def fake_direct() -> None:
        parts = []
        async for ev in Fake().chat(MESSAGES):
            if type(ev) is TextDelta:
                parts.append(ev.text)

    async def routed() -> None:
        parts = []
        async for ev in router.chat(MESSAGES):
            if type(ev) is TextDelta:
                parts.append(ev.text)

    async def cost(fn: Callable[[], Any]) -> float:
        samples = []
        for _ in range(reps):
            t = time.process_time()
            for _ in range(replies):
                r = fn()
                if asyncio.iscoroutine(r):
                    await r
            samples.append((time.process_time() - t) / replies * 1e6)
        return statistics.median(samples)

    out = {"sdk_decode_us": await cost(sdk_decode), "own_decode_us": await cost(own_decode)}
    for _ in range(2):  # warm, then measure each pair back to back
        bare_us, compat_us = await cost(bare_loop), await cost(compat)
        direct_us, routed_us = await cost(fake_direct), await cost(routed)
    out["openai_compat_added_us"] = compat_us - bare_us
    out["router_added_us"] = routed_us - direct_us
    return out


KEYS = (("rps", "replies_per_s"), ("p50_ms", "p50_ms"), ("p99_ms", "p99_ms"), ("cpu_ms", "cpu_ms_per_reply"))


def report(figures: dict[str, float], plan: list[tuple[int, int]], chunks: int, runs: int) -> None:
    print(f"chunks_per_reply: {chunks}")
    print(f"runs_per_side: {runs}")
    for c, n in plan:
        print(f"c{c}.replies_per_run: {n}")
        for name in ("router", "bare", "bare2"):
            for key, label in KEYS:
                print(f"c{c}.{name}.{label}: {figures[f'c{c}.{name}.{key}']:.2f}")
        for key, label in KEYS:
            bare = figures[f"c{c}.bare.{key}"]

            # >1 means slower than bare: time ratios as they are, throughput inverted
            def ratio(name: str, key: str = key, bare: float = bare, c: int = c) -> float:
                v = figures[f"c{c}.{name}.{key}"]
                return bare / v if key == "rps" else v / bare

            print(f"c{c}.{label}.router_over_bare: {ratio('router'):.3f}")
            print(f"c{c}.{label}.bare2_over_bare: {ratio('bare2'):.3f}")  # the noise floor, beside it
        for key, label in (("p50_ms", "p50"), ("rps", "throughput")):
            r = figures[f"c{c}.router.{key}"] / figures[f"c{c}.bare.{key}"]
            pct = (r - 1) * 100 if key != "rps" else (1 / r - 1) * 100
            print(f"c{c}.router_overhead_{label}_pct: {pct:.1f}")
    print("router_overhead_target_pct: 5")
    if "micro.sdk_decode_us" in figures:
        for k in ("sdk_decode_us", "own_decode_us", "openai_compat_added_us", "router_added_us"):
            print(f"micro.{k}_per_reply: {figures[f'micro.{k}']:.0f}")
        added = figures["micro.openai_compat_added_us"] + figures["micro.router_added_us"]
        base = figures[f"c{plan[0][0]}.bare.cpu_ms"] * 1e3
        print(f"micro.added_pct_of_bare_cpu: {100 * added / base:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--chunks", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--c1", type=int, default=60, help="replies per run at concurrency 1")
    ap.add_argument("--c200", type=int, default=200, help="replies per run at concurrency 200 (>= 200)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 2 rounds, 10 replies at c=1")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the client and the stub to separate CPUs")
    ap.add_argument("--json", action="store_true", help="also print every figure as one JSON line on stderr")
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.chunks))
        return
    plan = [(1, 10), (200, 200)] if args.quick else [(1, args.c1), (200, args.c200)]
    if args.quick:
        args.runs = min(args.runs, 2)
    proc, url = start_stub(args.chunks)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and not args.no_pin:  # stub and client each on a core of their own: steadier figures
        os.sched_setaffinity(proc.pid, {cpus[-1]})
        os.sched_setaffinity(0, {cpus[0]})
        log(f"pinned: client on cpu {cpus[0]}, stub on cpu {cpus[-1]}")
    try:
        t0 = time.perf_counter()
        figures = asyncio.run(bench(url, args.chunks, args.runs, plan))
        figures.update({f"micro.{k}": v for k, v in asyncio.run(micro(args.chunks)).items()})
        log(f"benchmark took {time.perf_counter() - t0:.1f} s")
    finally:
        proc.terminate()
        proc.wait(5)
    report(figures, plan, args.chunks, args.runs)
    if args.json:
        log(json.dumps(figures))


if __name__ == "__main__":
    main()
