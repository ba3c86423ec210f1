"""Summaries of the call records (`call_records`, one row per provider attempt, written by
the router through providers/records.py) per provider and per provider+model.

`summarize()` returns this JSON document (`studybot stats --json`):

    {
      "since": 1764000000.0, "until": 1764604800.0,     # unix seconds, the window [since, until)
      "days": 7, "tz": "Asia/Shanghai", "since_local": "2026-11-22 09:00", "until_local": "...",
      "currency": "CNY", "prices_as_of": "2025-09", "prices_checked": false,
      "total":     {<figures>},
      "providers": [{"provider": "qwen", "models": ["qwen-plus"], <figures>}, ...],
      "models":    [{"provider": "qwen", "model": "qwen-plus", <figures>}, ...]
    }

    <figures> = "calls":        every record (an attempt: retries and fallbacks count one each)
                "ok", "errors", "interrupted", "cancelled": records by outcome
                "success_rate": ok / (calls - cancelled), null without such calls (a cancelled call
                                was stopped by its consumer, not failed by the provider)
                "ttft_ms":  {"p50", "p95", "mean", "n"}  time to first token of ok calls
                "total_ms": {"p50", "p95", "mean", "n"}  whole duration of ok calls
                "tokens_in", "tokens_out": sums of reported usage
                "cost":     sum of the priced calls' cost, null when none was priced
                "unpriced_calls": ok calls whose model has no price
                "errors_by_kind": {"rate_limited": 3, ...}  errors and interruptions by kind
                "error_codes": [{"kind", "code", "count"}]  the same split by the provider's code

Percentiles interpolate linearly between the closest ranks (numpy's default method), over
ok calls only: a 401 that fails in 5 ms says nothing about how fast a model answers.
Lists are sorted by calls, most first; figures are rounded to 2 decimals (cost to 6).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from .app import App
    from .prices import PriceTable
    from .store import Store

DAY_S = 86400.0
MAX_DAYS = 3650
ERROR_OUTCOMES = ("error", "interrupted")


# error kinds (providers/errors.py) by name, Chinese and English
KIND_NAMES: dict[str, tuple[str, str]] = {
    "rate_limited": ("限流或额度", "rate limited"),
    "auth": ("鉴权失败", "authentication"),
    "timeout": ("超时", "timeout"),
    "unavailable": ("服务不可用", "unavailable"),
    "bad_request": ("请求无效", "bad request"),
    "content_filtered": ("内容审核拦截", "content filtered"),
    "interrupted": ("回答中断", "interrupted"),
    "error": ("其他错误", "other error"),
    "internal": ("内部错误", "internal error"),
}


def kind_name(kind: str | None, lang: str = "zh") -> str:
    zh, en = KIND_NAMES.get(kind or "error", (kind or "error", kind or "error"))
    return zh if lang == "zh" else en


class StatsError(ValueError):
    """A bad request (e.g. --days 0): the message is shown to the user."""


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks; None for no values."""
    if not values:
        return None
    a = sorted(values)
    pos = (len(a) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(a) - 1)
    return a[lo] + (a[hi] - a[lo]) * (pos - lo)


def _dist(values: list[float]) -> dict[str, Any]:
    return {"p50": _r(percentile(values, 50)), "p95": _r(percentile(values, 95)),
            "mean": _r(sum(values) / len(values)) if values else None, "n": len(values)}


def _r(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


def figures(rows: Iterable[Mapping[str, Any]], prices: PriceTable | None = None) -> dict[str, Any]:
    """The figures of the module docstring over some records."""
    rows = list(rows)
    outcomes = Counter(r["outcome"] for r in rows)
    ok_rows = [r for r in rows if r["outcome"] == "ok"]
    err_rows = [r for r in rows if r["outcome"] in ERROR_OUTCOMES]
    judged = len(rows) - outcomes.get("cancelled", 0)
    cost: float | None = None
    unpriced = 0
    for r in ok_rows:
        c = prices.cost(r["provider"], r["model"], r["tokens_in"], r["tokens_out"]) if prices else None
        if c is None:
            unpriced += 1
        else:
            cost = (cost or 0.0) + c
    codes = Counter((r["error_kind"] or "error", r["error_code"]) for r in err_rows)
    return {
        "calls": len(rows),
        "ok": outcomes.get("ok", 0),
        "errors": outcomes.get("error", 0),
        "interrupted": outcomes.get("interrupted", 0),
        "cancelled": outcomes.get("cancelled", 0),
        "success_rate": round(outcomes.get("ok", 0) / judged, 4) if judged else None,
        "ttft_ms": _dist([float(r["ttft_ms"]) for r in ok_rows if r["ttft_ms"] is not None]),
        "total_ms": _dist([float(r["duration_ms"]) for r in ok_rows]),
        "tokens_in": sum(int(r["tokens_in"] or 0) for r in rows),
        "tokens_out": sum(int(r["tokens_out"] or 0) for r in rows),
        "cost": None if cost is None else round(cost, 6),
        "unpriced_calls": unpriced,
        "errors_by_kind": dict(sorted(Counter(r["error_kind"] or "error" for r in err_rows).items(),
                                      key=lambda kv: (-kv[1], kv[0]))),
        "error_codes": [{"kind": k, "code": c, "count": n}
                        for (k, c), n in sorted(codes.items(), key=lambda kv: (-kv[1], kv[0][0], str(kv[0][1])))],
    }


def summarize_rows(rows: Sequence[Mapping[str, Any]], prices: PriceTable | None = None) -> dict[str, Any]:
    """total, per provider and per provider+model figures (no window fields)."""
    by_provider: dict[str, list[Mapping[str, Any]]] = {}
    by_model: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        by_provider.setdefault(r["provider"], []).append(r)
        by_model.setdefault((r["provider"], r["model"] or ""), []).append(r)
    providers = [{"provider": p, "models": sorted({r["model"] or "" for r in rs}), **figures(rs, prices)}
                 for p, rs in by_provider.items()]
    models = [{"provider": p, "model": m, **figures(rs, prices)} for (p, m), rs in by_model.items()]
    providers.sort(key=lambda d: (-d["calls"], d["provider"]))
    models.sort(key=lambda d: (-d["calls"], d["provider"], d["model"]))
    return {"total": figures(rows, prices), "providers": providers, "models": models}


def window(days: float, now: float) -> tuple[float, float]:
    if not (isinstance(days, int | float) and 0 < days <= MAX_DAYS):
        raise StatsError(f"--days 须在 1 到 {MAX_DAYS} 之间 / --days must be between 1 and {MAX_DAYS}")
    return now - days * DAY_S, now


async def load_rows(store: Store, days: float, now: float) -> tuple[list[dict[str, Any]], float, float]:
    since, until = window(days, now)
    # `until` is exclusive in the store; a record written this very second still belongs to the window
    rows = await store.call_records(since=since, until=math.nextafter(until, math.inf))
    return rows, since, until


async def summarize(store: Store, *, days: float = 7, now: Callable[[], float] = time.time,
                    prices: PriceTable | None = None, tz: str = "Asia/Shanghai") -> dict[str, Any]:
    rows, since, until = await load_rows(store, days, now())
    return document(rows, since, until, days, prices=prices, tz=tz)


def document(rows: Sequence[Mapping[str, Any]], since: float, until: float, days: float, *,
             prices: PriceTable | None = None, tz: str = "Asia/Shanghai") -> dict[str, Any]:
    zone = ZoneInfo(tz)
    head = {"since": since, "until": until, "days": days, "tz": tz,
            "since_local": datetime.fromtimestamp(since, zone).strftime("%Y-%m-%d %H:%M"),
            "until_local": datetime.fromtimestamp(until, zone).strftime("%Y-%m-%d %H:%M"),
            "currency": prices.currency if prices else None, "prices_as_of": prices.as_of if prices else None,
            "prices_checked": prices.checked if prices else None}
    return {**head, **summarize_rows(rows, prices)}


# --- text output -----------------------------------------------------------------------------------

def _ms(d: Mapping[str, Any], key: str) -> str:
    v = d[key]
    return "-" if v is None else f"{v:.0f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def format_stats(doc: Mapping[str, Any]) -> str:
    """A plain-text table for the terminal."""
    t = doc["total"]
    lines = [f"调用统计 / call stats  {doc['since_local']} — {doc['until_local']} ({doc['tz']})",
             f"共 {t['calls']} 次调用，成功率 {_pct(t['success_rate'])} / {t['calls']} calls, "
             f"success {_pct(t['success_rate'])}"]
    if not doc["models"]:
        lines.append("这段时间没有调用记录 / no calls in this window")
        return "\n".join(lines)
    lines.append(f"{'服务商/模型 provider/model':<34} {'调用':>5} {'成功率':>7} {'TTFT p50/p95 ms':>16} "
                 f"{'总延迟 p50/p95 ms':>18} {'tokens 入/出':>14}  {'费用':>10}  错误 errors")
    for m in doc["models"]:
        name = f"{m['provider']}/{m['model'] or '-'}"
        ttft = f"{_ms(m['ttft_ms'], 'p50')}/{_ms(m['ttft_ms'], 'p95')}"
        total = f"{_ms(m['total_ms'], 'p50')}/{_ms(m['total_ms'], 'p95')}"
        cost = "-" if m["cost"] is None else f"{m['cost']:.4f}"
        errs = ", ".join(f"{k}×{n}" for k, n in m["errors_by_kind"].items()) or "-"
        lines.append(f"{name:<34} {m['calls']:>5} {_pct(m['success_rate']):>7} {ttft:>16} {total:>18} "
                     f"{m['tokens_in']:>6}/{m['tokens_out']:<7}  {cost:>10}  {errs}")
    if doc.get("currency"):
        lines.append(f"费用单位 {doc['currency']}，价格为 {doc['prices_as_of']} 的估算值 / cost in "
                     f"{doc['currency']}, estimated prices as of {doc['prices_as_of']}")
    return "\n".join(lines)


async def cli_stats(app: App, days: float = 7, *, as_json: bool = False, chart: Path | None = None,
                    out: TextIO | None = None, err: TextIO | None = None,
                    now: Callable[[], float] = time.time) -> int:
    """`studybot stats [--days N] [--json] [--chart FILE.png]`. With --chart, the latency chart goes
    to FILE.png and the errors-over-time chart next to it (FILE-errors.png)."""
    from .prices import prices_for

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        rows, since, until = await load_rows(await app.store(), days, now())
    except StatsError as e:
        err.write(f"studybot: {e}\n")
        return 2
    doc = document(rows, since, until, days, prices=prices_for(app.settings), tz=app.settings.tz)
    if chart is not None:
        from .charts import errors_chart, latency_chart

        chart = Path(chart)
        charts = [await asyncio.to_thread(latency_chart, rows, chart),
                  await asyncio.to_thread(errors_chart, rows,
                                          chart.with_name(f"{chart.stem}-errors{chart.suffix or '.png'}"),
                                          since=since, until=until, tz=app.settings.tz)]
        doc["charts"] = [str(c.path) for c in charts]
        for c in charts:
            for w in c.warnings:
                err.write(f"studybot: {w}\n")
    if as_json:
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        out.write(format_stats(doc) + "\n")
        for p in doc.get("charts", []):
            out.write(f"图表 / chart: {p}\n")
    out.flush()
    return 0


async def slash_stats(app: App, arg: str, write: Callable[[str], None], *,
                      now: Callable[[], float] = time.time) -> None:
    """The terminal's `/stats [N]` (N days, default 7)."""
    from .prices import prices_for

    arg = (arg or "").strip()
    try:
        days: float = (int(arg) if arg.isdigit() else float(arg)) if arg else 7
        rows, since, until = await load_rows(await app.store(), days, now())
    except (ValueError, StatsError) as e:
        write(str(e) if isinstance(e, StatsError) else "用法 / usage: /stats [天数 days]")
        return
    write(format_stats(document(rows, since, until, days, prices=prices_for(app.settings), tz=app.settings.tz)))
