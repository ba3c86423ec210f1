"""The API usage report: Markdown in Chinese from the call records, charts next to it.

Sections: which providers were used, how they performed (the figures of bot/stats.py),
every kind of error met with its count, what the router did about it, what the user can
do, and the two charts of bot/charts.py as PNG files beside the report (relative links).

What the router did is derived from the records, which hold one row per attempt but no
call id. Attempts are grouped into calls by the router's own rules (providers/router.py):
- a record that starts when an earlier `error` record ended (within `FALLBACK_GAP_S`) on
  another provider continues that call: a **fallback**;
- a record on the same provider starting within the longest retry wait
  (`RetryPolicy.max_retry_after_s`, plus slack) after a retryable error continues it: a **retry**;
- `interrupted` records are never continued (the router never retries after text was shown).
Cooldowns are replayed with the router's breaker rules over each provider's records
(`failure_threshold` consecutive retryable failures open it for `cooldown_s`; an auth error
for `auth_cooldown_s`; a daily quota for `daily_cooldown_s`); a call that started while a
provider was cooling and did not use it was routed around it. With many users at once two
calls can overlap and the grouping is then an estimate; the report says so.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from providers.errors import ERROR_KINDS, RateLimited, from_code

from .render import scrub
from .stats import ERROR_OUTCOMES, StatsError, document, kind_name, load_rows

if TYPE_CHECKING:
    from providers.router import RetryPolicy

    from .app import App
    from .charts import Chart
    from .prices import PriceTable
    from .store import Store

FALLBACK_GAP_S = 0.5  # the router moves to the next provider at once
TOLERANCE_S = 0.05  # clock and rounding slack between one attempt's end and the next one's start


# --- grouping attempts into calls --------------------------------------------------------------------

def _end(r: Mapping[str, Any]) -> float:
    return float(r["started_at"]) + float(r["duration_ms"] or 0.0) / 1000.0


def is_daily(r: Mapping[str, Any]) -> bool:
    if r["error_kind"] != "rate_limited" or r["error_code"] in (None, ""):
        return False
    err = from_code(r["error_code"], "")
    return isinstance(err, RateLimited) and err.daily


def is_retryable(r: Mapping[str, Any]) -> bool:
    cls = ERROR_KINDS.get(r["error_kind"] or "")
    return bool(cls and cls.retryable) and not is_daily(r)


@dataclass
class Call:
    """Attempts of one inferred call, in order; `links[i]` says how attempt i+1 followed attempt i."""

    attempts: list[Mapping[str, Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # retry | fallback

    @property
    def start(self) -> float:
        return float(self.attempts[0]["started_at"])

    @property
    def outcome(self) -> str:
        return str(self.attempts[-1]["outcome"])

    @property
    def providers(self) -> set[str]:
        return {a["provider"] for a in self.attempts}


def group_calls(rows: Sequence[Mapping[str, Any]], policy: RetryPolicy | None = None) -> list[Call]:
    """Attempts grouped into calls by the rules of the module docstring, in start order."""
    from providers.router import RetryPolicy

    policy = policy or RetryPolicy()
    retry_gap = max(policy.max_retry_after_s, policy.max_delay_s) + 1.0
    ordered = sorted(rows, key=lambda r: (float(r["started_at"]), r.get("id") or 0))
    calls: list[Call] = []
    open_calls: list[Call] = []  # calls whose last attempt failed and might go on
    for r in ordered:
        start = float(r["started_at"])
        open_calls = [c for c in open_calls if start <= _end(c.attempts[-1]) + retry_gap]
        best: tuple[float, Call, str] | None = None
        for c in open_calls:
            last = c.attempts[-1]
            gap = start - _end(last)
            if gap < -TOLERANCE_S or last.get("purpose") != r.get("purpose"):
                continue
            if r["provider"] != last["provider"] and gap <= FALLBACK_GAP_S:
                link = "fallback"
            elif r["provider"] == last["provider"] and is_retryable(last) and gap <= retry_gap:
                link = "retry"
            else:
                continue
            if best is None or gap < best[0]:
                best = (gap, c, link)
        if best is not None:
            call = best[1]
            call.attempts.append(r)
            call.links.append(best[2])
            if r["outcome"] != "error":
                open_calls.remove(call)
        else:
            call = Call([r])
            calls.append(call)
            if r["outcome"] == "error":
                open_calls.append(call)
    return calls


@dataclass
class Cooldown:
    provider: str
    start: float
    until: float
    reason: str  # failures | auth | daily


def replay_breakers(rows: Sequence[Mapping[str, Any]], policy: RetryPolicy | None = None) -> list[Cooldown]:
    """Breaker openings per provider, replayed with the router's rules."""
    from providers.router import RetryPolicy

    policy = policy or RetryPolicy()
    out: list[Cooldown] = []
    state: dict[str, tuple[int, float]] = {}  # provider -> (consecutive failures, open until)
    current: dict[str, Cooldown] = {}  # provider -> its latest opening
    for r in sorted(rows, key=lambda r: (_end(r), r.get("id") or 0)):
        p = r["provider"]
        failures, until = state.get(p, (0, 0.0))
        t = _end(r)
        if r["outcome"] == "ok":
            state[p] = (0, 0.0)
            continue
        if r["outcome"] not in ERROR_OUTCOMES:
            continue
        new_until, reason = until, ""
        if r["error_kind"] == "auth":
            failures += 1
            new_until, reason = t + policy.auth_cooldown_s, "auth"
        elif is_daily(r):
            failures += 1
            new_until, reason = t + policy.daily_cooldown_s, "daily"
        elif is_retryable(r):
            failures += 1
            if failures >= policy.failure_threshold:
                new_until, reason = t + policy.cooldown_s, "failures"
        if reason:
            if until > t and p in current:  # already open: extended, not a new opening
                current[p].until = new_until  # the router sets, it does not take the later of the two
            else:
                current[p] = Cooldown(p, t, new_until, reason)
                out.append(current[p])
        state[p] = (failures, new_until)
    return out


@dataclass
class RouterActions:
    calls: int = 0
    retries: int = 0
    retries_then_ok: int = 0  # calls that succeeded on a provider they had retried
    fallbacks: int = 0
    fallbacks_then_ok: int = 0  # calls that succeeded after at least one fallback
    failed_calls: int = 0  # the user got an error
    interrupted_calls: int = 0
    cooldowns: list[Cooldown] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # calls routed around a cooling provider
    after_error: dict[tuple[str, str | None], Counter[str]] = field(default_factory=dict)  # (kind, code) -> next step

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "retries": self.retries, "retries_then_ok": self.retries_then_ok,
                "fallbacks": self.fallbacks, "fallbacks_then_ok": self.fallbacks_then_ok,
                "failed_calls": self.failed_calls, "interrupted_calls": self.interrupted_calls,
                "cooldowns": [{"provider": c.provider, "start": c.start, "until": c.until, "reason": c.reason}
                              for c in self.cooldowns],
                "skipped": dict(self.skipped)}


def router_actions(rows: Sequence[Mapping[str, Any]], policy: RetryPolicy | None = None) -> RouterActions:
    calls = group_calls(rows, policy)
    acts = RouterActions(calls=len(calls), cooldowns=replay_breakers(rows, policy))
    for c in calls:
        acts.retries += c.links.count("retry")
        acts.fallbacks += c.links.count("fallback")
        if c.outcome == "ok":
            last = c.attempts[-1]["provider"]
            if any(link == "retry" and c.attempts[i + 1]["provider"] == last for i, link in enumerate(c.links)):
                acts.retries_then_ok += 1
            if "fallback" in c.links:
                acts.fallbacks_then_ok += 1
        elif c.outcome == "error":
            acts.failed_calls += 1
        elif c.outcome == "interrupted":
            acts.interrupted_calls += 1
        for i, a in enumerate(c.attempts):
            if a["outcome"] not in ERROR_OUTCOMES:
                continue
            step = c.links[i] if i < len(c.links) else "gave_up"
            # an interruption is its own case for the router (never retried), whatever error cut the stream
            kind = "interrupted" if a["outcome"] == "interrupted" else (a["error_kind"] or "error")
            acts.after_error.setdefault((kind, a["error_code"]), Counter())[step] += 1
        if c.attempts[0].get("purpose") != "compare":  # a pinned call never routes around anyone
            for cd in acts.cooldowns:
                if cd.start < c.start < cd.until and cd.provider not in c.providers:
                    acts.skipped[cd.provider] += 1
    return acts


# --- advice ----------------------------------------------------------------------------------------------

# what the router does with each kind (providers/router.py), and what the user can do
ROUTER_DOES: dict[str, str] = {
    "rate_limited": "按退避加抖动重试并遵守 Retry-After（后面还有备选时只做一次一秒内的快速重试），随后切换到下一个服务商；"
                    "连续 3 次失败触发冷却；“今日额度用完”直接冷却 1 小时",
    "auth": "不重试（重试也没用），该服务商冷却 10 分钟，切换到下一个服务商",
    "timeout": "重试（退避加抖动），随后切换；连续 3 次失败触发冷却",
    "unavailable": "重试（退避加抖动），随后切换；连续 3 次失败触发冷却",
    "bad_request": "不重试（问题在请求本身），切换到下一个服务商",
    "content_filtered": "不重试，切换到下一个服务商（不同服务商的审核尺度不同）",
    "interrupted": "已经显示了部分回答，不会在用户背后重试；回答标注“可能不完整”",
}

ADVICE_BY_KIND: dict[str, str] = {
    "rate_limited": "降低并发（`<NAME>_MAX_CONCURRENCY`，如 `SPARK_MAX_CONCURRENCY=1`）和每人频率（`RATE_LIMIT_USER_PER_MIN`）；"
                    "收到 429 时等待 Retry-After 给出的秒数；长期不够用就升级配额，或在 `STUDYBOT_PROVIDERS` 里把别的服务商排前面",
    "auth": "检查密钥：是否填写、是否过期、是否与服务对应（`SPARK_API_PASSWORD`、`QIANFAN_API_KEY`、`DASHSCOPE_API_KEY`、"
            "`OPENAI_API_KEY`、`<NAME>_API_KEY`）；在控制台确认服务已开通、账户未欠费",
    "timeout": "网络或服务端慢：检查网络与代理；必要时调大 `STUDYBOT_FIRST_TOKEN_TIMEOUT_S` / `STUDYBOT_TOTAL_TIMEOUT_S`；"
               "本地模型（vLLM/Ollama）检查负载与显存",
    "unavailable": "服务端暂时不可用或过载：稍后再试，路由器会自动切换；本地服务请确认 `VLLM_BASE_URL`/`OLLAMA_BASE_URL` 上的服务在运行",
    "bad_request": "请求被拒绝：常见原因是上下文过长、模型名不对（`<NAME>_MODEL`）或参数不被支持；缩短输入或换用长上下文模型",
    "content_filtered": "内容未通过服务商审核：改写提问、避开敏感表述，或换一个服务商",
    "interrupted": "回答中途断开：重新提问即可；频繁出现时检查网络稳定性或服务端日志",
    "error": "未归类的错误：查看日志（`STUDYBOT_LOG_LEVEL=DEBUG`）中的请求 ID，联系服务商排查",
}

# codes with a meaning of their own (Spark business codes, Qianfan and DashScope error codes, HTTP statuses)
ADVICE_BY_CODE: dict[str, str] = {
    "11200": "星火 11200：授权错误——该 appId 没有此功能的授权，或业务量超过限制。到讯飞控制台确认服务已开通、余量未用完",
    "11201": "星火 11201：日流控超限（当天调用次数用完）。等到第二天，或在控制台购买/升级额度",
    "11202": "星火 11202：秒级流控超限（每秒请求数超过配额）。降低并发（`SPARK_MAX_CONCURRENCY=1`），或在控制台升级 QPS 配额",
    "11203": "星火 11203：并发流控超限。降低同时进行的请求数（`SPARK_MAX_CONCURRENCY`），或升级并发配额",
    "10013": "星火 10013：输入内容审核不通过。改写提问",
    "10014": "星火 10014：输出内容涉及敏感信息，审核不通过。换个问法或换一个服务商",
    "10019": "星火 10019：内容审核不通过（疑似敏感）。改写提问",
    "10907": "星火 10907：token 数超过上限。缩短输入或对话历史",
    "10007": "星火 10007：用户流量受限（同一会话请求过于频繁）。稍后再试，降低并发",
    "401": "HTTP 401：密钥无效或缺失。检查对应的 API Key 环境变量",
    "403": "HTTP 403：无权访问该模型或服务。确认已开通、账户未欠费",
    "429": "HTTP 429：请求过多。路由器会按 Retry-After 等待；降低并发或升级配额",
    "datainspectionfailed": "通义千问 DataInspectionFailed：输入或输出触发内容安全审核。改写提问",
    "data_inspection_failed": "通义千问 data_inspection_failed：输入或输出触发内容安全审核。改写提问",
    "arrearage": "通义千问 Arrearage：阿里云账户欠费。充值后恢复",
    "invalidapikey": "通义千问 InvalidApiKey：`DASHSCOPE_API_KEY` 不正确",
    "invalid_api_key": "API Key 不正确：检查对应的密钥环境变量",
    "throttling": "通义千问 Throttling：请求过于频繁。降低并发或申请更高限额",
    "throttling.ratequota": "通义千问 Throttling.RateQuota：超过每分钟请求/token 限额。降低并发或申请更高限额",
    "throttling.allocationquota": "通义千问 Throttling.AllocationQuota：额度不足（免费额度用完）。开通按量付费或购买额度",
    "insufficient_quota": "额度用完（insufficient_quota）。充值或购买额度，或换一个服务商",
    "rpm_rate_limit_exceeded": "千帆 rpm_rate_limit_exceeded：每分钟请求数超限。降低并发或购买更高 RPM",
    "tpm_rate_limit_exceeded": "千帆 tpm_rate_limit_exceeded：每分钟 token 数超限。缩短输入、降低并发或购买更高 TPM",
    "qps_rate_limit_exceeded": "千帆 qps_rate_limit_exceeded：每秒请求数超限。降低并发",
    "access_denied": "千帆 access_denied：没有权限。检查 `QIANFAN_API_KEY`，以及 `QIANFAN_APPID` 是否属于这个 Key",
    "unauthorized": "未授权：检查密钥",
    "characters_too_long": "千帆 characters_too_long：输入过长。缩短输入或对话历史",
    "tokens_too_long": "千帆 tokens_too_long：token 数超过模型上限。缩短输入或换长上下文模型",
    "server_high_load": "服务端高负载（server_high_load）：稍后再试，路由器会自动切换",
}


def advice(kind: str | None, code: str | None) -> str:
    key = str(code).strip().lower() if code not in (None, "") else ""
    return ADVICE_BY_CODE.get(key) or ADVICE_BY_KIND.get(kind or "error", ADVICE_BY_KIND["error"])


# --- Markdown ----------------------------------------------------------------------------------------------

def cell(v: Any) -> str:
    """A table cell: untrusted text made safe, pipes and newlines escaped."""
    s = scrub(str(v)) if v is not None else "-"
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") or "-"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _num(v: float | None, nd: int = 0) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _cost(v: float | None) -> str:
    return "-" if v is None else f"{v:.6f}"


def render_markdown(doc: Mapping[str, Any], actions: RouterActions, *, charts: Mapping[str, str] | None = None,
                    generated_at: float | None = None, tz: str = "Asia/Shanghai",
                    policy: RetryPolicy | None = None) -> str:
    """The report from a stats document (bot/stats.py) and the router's inferred actions.
    `charts`: {"latency": link, "errors": link} to embed."""
    from providers.router import RetryPolicy

    policy = policy or RetryPolicy()
    charts = charts or {}
    t = doc["total"]
    zone = ZoneInfo(tz)
    gen = datetime.fromtimestamp(generated_at if generated_at is not None else time.time(), zone)
    cur = doc.get("currency") or "CNY"
    out: list[str] = [
        "# 学伴 API 使用报告",
        "",
        f"- 时间范围：{doc['since_local']} — {doc['until_local']}（{tz}，最近 {doc['days']} 天）",
        f"- 生成时间：{gen:%Y-%m-%d %H:%M}",
        "- 数据来源：`call_records` 表，路由器对每一次尝试（含重试与切换）记一行",
        "",
        "## 概览",
        "",
    ]
    if not t["calls"]:
        out += ["这段时间没有调用记录。", ""]
    else:
        cost = f"，估算费用 {_cost(t['cost'])} {cur}" if t["cost"] is not None else ""
        out += [f"共 **{t['calls']}** 次调用尝试（推断为 {actions.calls} 次请求），成功 {t['ok']} 次，"
                f"失败 {t['errors']} 次，中断 {t['interrupted']} 次，取消 {t['cancelled']} 次，"
                f"成功率 **{_pct(t['success_rate'])}**。输入 {t['tokens_in']} tokens，输出 {t['tokens_out']} tokens{cost}。", ""]

    out += ["## 使用的服务商", "", "| 服务商 | 模型 | 调用次数 | 占比 |", "| --- | --- | ---: | ---: |"]
    for p in doc["providers"]:
        share = p["calls"] / t["calls"] if t["calls"] else 0
        out.append(f"| {cell(p['provider'])} | {cell(', '.join(m or '-' for m in p['models']))} | {p['calls']} | "
                   f"{_pct(share)} |")
    out.append("")

    out += ["## 性能", "",
            "成功调用的延迟；p50 为中位数，p95 表示 95% 的调用不慢于此值。成功率 = 成功 ÷（调用 − 取消）。", "",
            f"| 服务商 | 模型 | 调用 | 成功 | 成功率 | 首字延迟 p50 (ms) | 首字延迟 p95 (ms) | 总延迟 p50 (ms) | "
            f"总延迟 p95 (ms) | 输入 tokens | 输出 tokens | 费用 ({cur}) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    table = [(cell(m["provider"]), cell(m["model"]) if m["model"] else "-", m) for m in doc["models"]]
    for prov, model, m in [*table, ("**合计**", "-", t)]:
        out.append(f"| {prov} | {model} | {m['calls']} | {m['ok']} | {_pct(m['success_rate'])} | "
                   f"{_num(m['ttft_ms']['p50'], 1)} | {_num(m['ttft_ms']['p95'], 1)} | "
                   f"{_num(m['total_ms']['p50'], 1)} | {_num(m['total_ms']['p95'], 1)} | "
                   f"{m['tokens_in']} | {m['tokens_out']} | {_cost(m['cost'])} |")
    out.append("")
    if "latency" in charts:
        out += [f"![各服务商延迟分布]({charts['latency']})", ""]

    out += ["## 遇到的错误", ""]
    errors = [(p["provider"], e) for p in doc["providers"] for e in p["error_codes"]]
    if not errors:
        out += ["这段时间没有遇到错误。", ""]
    else:
        out += ["| 错误类型 | 代码 | 服务商 | 次数 | 含义 |", "| --- | --- | --- | ---: | --- |"]
        for prov, e in sorted(errors, key=lambda pe: (-pe[1]["count"], pe[1]["kind"], pe[0], str(pe[1]["code"]))):
            out.append(f"| {kind_name(e['kind'])} (`{cell(e['kind'])}`) | {cell(e['code'])} | {cell(prov)} | "
                       f"{e['count']} | {cell(advice(e['kind'], e['code']).split('。')[0])} |")
        out += ["", "按类型合计：" + "，".join(f"{kind_name(k)} {n} 次" for k, n in t["errors_by_kind"].items()) + "。", ""]
    if "errors" in charts:
        out += [f"![每日错误次数]({charts['errors']})", ""]

    out += ["## 路由器做了什么", "",
            f"- **重试**：{actions.retries} 次；其中 {actions.retries_then_ok} 次请求在重试后由同一服务商答出。",
            f"- **切换（fallback）**：{actions.fallbacks} 次；其中 {actions.fallbacks_then_ok} 次请求切换后得到回答。",
            f"- **最终失败**：{actions.failed_calls} 次请求所有尝试都失败，用户看到了错误提示；"
            f"{actions.interrupted_calls} 次回答中途中断（已显示部分内容，未重试）。"]
    if actions.cooldowns:
        by_p = Counter(c.provider for c in actions.cooldowns)
        reasons = {"failures": f"连续 {policy.failure_threshold} 次失败", "auth": "鉴权失败", "daily": "当日额度用完"}
        detail = "；".join(
            f"{cell(p)} {n} 次（" + "、".join(sorted({reasons[c.reason] for c in actions.cooldowns if c.provider == p}))
            + f"），冷却期间 {actions.skipped.get(p, 0)} 次请求绕开了它" for p, n in by_p.items())
        out.append(f"- **冷却（熔断）**：{detail}。")
    else:
        out.append("- **冷却（熔断）**：没有服务商进入冷却。")
    out.append("")
    if actions.after_error:
        out += ["每种错误之后路由器的下一步：", "",
                "| 错误类型 | 代码 | 次数 | 之后重试 | 之后切换 | 不再尝试 | 路由器的规则 |",
                "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for (kind, code), steps in sorted(actions.after_error.items(), key=lambda kv: (-sum(kv[1].values()), kv[0][0],
                                                                                     str(kv[0][1]))):
            out.append(f"| {kind_name(kind)} | {cell(code)} | {sum(steps.values())} | {steps.get('retry', 0)} | "
                       f"{steps.get('fallback', 0)} | {steps.get('gave_up', 0)} | {ROUTER_DOES.get(kind, '切换到下一个服务商')} |")
        out.append("")
    out += ["> 记录里没有请求编号：以上重试、切换与冷却是按路由器的规则从各次尝试的时间先后推断的；"
            "多人同时使用时个别请求可能被归错。", ""]

    out += ["## 你可以怎么做", ""]
    met = sorted({(e["kind"], e["code"]) for _, e in errors}, key=lambda kc: (kc[0], str(kc[1])))
    if not met:
        out += ["没有需要处理的错误。", ""]
    else:
        seen: set[str] = set()
        for kind, code in met:
            text = advice(kind, code)
            if text in seen:
                continue
            seen.add(text)
            label = f"{kind_name(kind)}" + (f"（{cell(code)}）" if code not in (None, "") else "")
            out.append(f"- **{label}**：{text}")
        out.append("")

    out += ["## 说明", "",
            f"- 费用按价格表估算（{cur}/百万 tokens，价格取自 {doc.get('prices_as_of') or '?'}"
            f"{'，已核对' if doc.get('prices_checked') else '，未核对，仅供参考'}）；没有价格的模型不计费用，用 `PRICES_FILE` 指定自己的价格表。",
            "- 延迟只统计成功的调用；每次重试或切换都单独计为一次调用尝试。", ""]
    return "\n".join(out)


@dataclass
class Report:
    markdown: str
    path: Path | None
    charts: list[Chart]
    stats: dict[str, Any]
    actions: RouterActions
    warnings: list[str] = field(default_factory=list)


async def build_report(store: Store, *, days: float = 7, now: Callable[[], float] = time.time,
                       prices: PriceTable | None = None, tz: str = "Asia/Shanghai", out: Path | None = None,
                       chart_dir: Path | None = None, policy: RetryPolicy | None = None,
                       with_charts: bool = True) -> Report:
    """Write the report to `out` (charts beside it, linked relatively) or, without `out`, return the
    Markdown with the charts in `chart_dir` linked by absolute path."""
    from .charts import errors_chart, latency_chart

    at = now()
    rows, since, until = await load_rows(store, days, at)
    doc = document(rows, since, until, days, prices=prices, tz=tz)
    actions = router_actions(rows, policy)
    charts: list[Chart] = []
    links: dict[str, str] = {}
    if with_charts and (out is not None or chart_dir is not None):
        base = out.parent if out is not None else Path(chart_dir)  # type: ignore[arg-type]
        stem = out.stem if out is not None else f"report-{datetime.fromtimestamp(at, ZoneInfo(tz)):%Y%m%d-%H%M%S}"
        # matplotlib is CPU work of about a second: keep the event loop (a Discord bot) responsive
        lat = await asyncio.to_thread(latency_chart, rows, base / f"{stem}-latency.png")
        err = await asyncio.to_thread(errors_chart, rows, base / f"{stem}-errors.png", since=since, until=until,
                                      tz=tz)
        charts = [lat, err]
        for key, c in (("latency", lat), ("errors", err)):
            links[key] = c.path.name if out is not None else c.path.resolve().as_posix()
    md = render_markdown(doc, actions, charts=links, generated_at=at, tz=tz, policy=policy)
    if out is not None:
        await asyncio.to_thread(_write, out, md)
    warns = list(dict.fromkeys(w for c in charts for w in c.warnings))
    return Report(md, out, charts, doc, actions, warns)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


async def cli_report(app: App, days: float = 7, out: Path | None = None, *, stdout: TextIO | None = None,
                     stderr: TextIO | None = None, now: Callable[[], float] = time.time) -> int:
    """`studybot report [--days N] [--out FILE.md]`: without --out the Markdown goes to stdout and the
    charts to `<data dir>/reports/`."""
    from .prices import prices_for

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        rep = await build_report(await app.store(), days=days, now=now, prices=prices_for(app.settings),
                                 tz=app.settings.tz, out=Path(out) if out else None,
                                 chart_dir=None if out else app.settings.data_path / "reports")
    except StatsError as e:
        stderr.write(f"studybot: {e}\n")
        return 2
    for w in rep.warnings:
        stderr.write(f"studybot: {w}\n")
    if out is None:
        stdout.write(rep.markdown + "\n")
        stdout.flush()
    else:
        stderr.write(f"报告已写入 / report written: {out} (+ {len(rep.charts)} 张图 charts)\n")
    return 0
