"""Model comparison: one prompt to several providers at once, side by side.

Each provider is pinned (`Router.chat(..., only=name)`): a comparison never falls back, so
an answer always comes from the provider its panel names. Providers run concurrently; one
that fails fills only its own `error`. Each panel can be rendered live through an
`on_update` callback (adapters throttle their own edits). Runs and results are stored so
users can vote for the best answer (one vote per user per run, changeable); the votes make
a per-guild leaderboard of models.

Leaderboard rule: a run counts once it has at least one vote. In each counted run every
answer without an error is one "run" for its (provider, model); the answer with the most
votes wins; answers tied on the most votes get a "tie", not a win. win_rate = wins / runs.
Failed answers are left out: the board ranks answers, reliability is in `stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    insert,
    select,
)

from providers import Final, ProviderError, ReasoningDelta, TextDelta, ToolCallDelta
from providers.records import Caller

from .app import TERMINAL_USER
from .errors import ConfigError
from .render import scrub
from .store import metadata, register_migration

if TYPE_CHECKING:
    from providers.router import Router

    from .app import App
    from .prices import PriceTable
    from .store import Store

log = logging.getLogger(__name__)

MAX_PROVIDERS = 6
MAX_PROMPT_CHARS = 4000

# --- v4: compare runs, results, votes --------------------------------------------------------------
compare_runs = Table(
    "compare_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prompt", Text, nullable=False),
    Column("user_id", String(64)),
    Column("guild_id", String(64)),  # None: terminal / CLI runs
    Column("channel_id", String(64)),
    Column("created_at", Float, nullable=False),
    Index("ix_compare_runs_guild", "guild_id", "created_at"),
)
compare_results = Table(
    "compare_results", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("compare_runs.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),  # panel order, 0-based
    Column("provider", String(64), nullable=False),
    Column("model", String(128), nullable=False, default=""),
    Column("answer", Text, nullable=False, default=""),
    Column("error", Text),
    Column("error_kind", String(32)),
    Column("ttft_ms", Float),
    Column("total_ms", Float),
    Column("tokens_in", Integer),
    Column("tokens_out", Integer),
    Column("cost", Float),
    UniqueConstraint("run_id", "position", name="uq_compare_result_pos"),
)
compare_votes = Table(
    "compare_votes", metadata,
    Column("run_id", Integer, ForeignKey("compare_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(64), primary_key=True),  # one vote per user per run
    Column("result_id", Integer, ForeignKey("compare_results.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
register_migration(4, (compare_runs, compare_results, compare_votes))


class CompareError(ValueError):
    """A request the user can fix (empty prompt, unknown run, vote for a failed answer ...)."""


# --- results -------------------------------------------------------------------------------------------

@dataclass
class CompareResult:
    provider: str
    model: str = ""
    answer: str = ""
    error: str | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost: float | None = None
    error_kind: str | None = None
    done: bool = False
    result_id: int | None = None  # set once stored

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "answer": self.answer, "error": self.error,
                "ttft_ms": _r1(self.ttft_ms), "total_ms": _r1(self.total_ms), "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "cost": self.cost, "error_kind": self.error_kind}


@dataclass
class CompareRun:
    prompt: str
    results: list[CompareResult]
    run_id: int | None = None
    currency: str = "CNY"
    prices_as_of: str = ""

    def document(self) -> dict[str, Any]:
        """The JSON of DESIGN §3: {"prompt", "results": [...]} (plus run_id and the price basis)."""
        return {"prompt": self.prompt, "results": [r.as_dict() for r in self.results], "run_id": self.run_id,
                "currency": self.currency, "prices_as_of": self.prices_as_of}


@dataclass(frozen=True, slots=True)
class PanelUpdate:
    """One step of one panel: `delta` is the new text ("" when the panel starts or ends)."""

    index: int
    result: CompareResult
    delta: str
    done: bool

    @property
    def text(self) -> str:
        """The answer so far, safe to show (LLM output is untrusted)."""
        return scrub(self.result.answer)


OnUpdate = Callable[[PanelUpdate], "Awaitable[None] | None"]


def _r1(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


# --- the comparison --------------------------------------------------------------------------------------

def parse_providers(value: str | Sequence[str]) -> list[str]:
    """`a,b,c` (or a list) → names, lower-cased, in order, repeats dropped."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = list(dict.fromkeys(p.strip().lower() for p in items if p and p.strip()))
    if not names:
        raise CompareError("请至少指定一个模型服务 / name at least one provider (e.g. --providers qwen,ernie)")
    if len(names) > MAX_PROVIDERS:
        raise CompareError(f"一次最多比较 {MAX_PROVIDERS} 个模型服务 / at most {MAX_PROVIDERS} providers at once")
    return names


async def compare(
    router: Router,
    prompt: str,
    providers: Sequence[str],
    *,
    prices: PriceTable | None = None,
    on_update: OnUpdate | None = None,
    clock: Callable[[], float] = time.monotonic,
    system: str | None = None,
    models: dict[str, str] | None = None,
    failed: dict[str, str] | None = None,
    timeout_s: float | None = 180.0,
    caller: Caller | None = None,
) -> CompareRun:
    """Ask every provider at once; results in the order the providers were given.

    `failed` holds providers known to be unusable (missing key ...) with their message: they
    get a panel with that error and no request. `timeout_s` bounds each provider on its own.
    `on_update` runs inline with its panel's stream: it should only buffer (an adapter edits its
    message on its own schedule), or the wait shows up in that panel's total time.
    """
    prompt = (prompt or "").strip()
    if not prompt:
        raise CompareError("请输入要比较的问题 / type a prompt to compare")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise CompareError(f"问题过长（最多 {MAX_PROMPT_CHARS} 字符）/ prompt longer than {MAX_PROMPT_CHARS} characters")
    names = parse_providers(providers)
    messages: list[dict[str, Any]] = ([{"role": "system", "content": system}] if system else [])
    messages.append({"role": "user", "content": prompt})
    results = [CompareResult(n) for n in names]
    failed = failed or {}
    models = models or {}

    async def notify(i: int, delta: str, done: bool) -> None:
        if on_update is None:
            return
        try:
            ret = on_update(PanelUpdate(i, results[i], delta, done))
            if inspect.isawaitable(ret):
                await ret
        except Exception:  # a panel that cannot be drawn must not stop the comparison
            log.exception("compare: update callback failed for %s", results[i].provider)

    async def one(i: int) -> None:
        r = results[i]
        name = r.provider
        provider = router.providers.get(name)
        r.model = models.get(name) or (getattr(provider, "default_model", "") or "")
        await notify(i, "", False)
        t0 = clock()
        text: list[str] = []
        final: Final | None = None
        try:
            if name in failed:
                raise ProviderError(failed[name], provider=name)
            async with _timeout(timeout_s):
                async for ev in router.chat(messages, only=name, purpose="compare", model=models.get(name),
                                            caller=caller):
                    if isinstance(ev, Final):
                        final = ev
                        continue
                    # the first token of any sort, reasoning included, as in the router's call records
                    if r.ttft_ms is None and isinstance(ev, (TextDelta, ReasoningDelta, ToolCallDelta)):
                        r.ttft_ms = (clock() - t0) * 1e3
                    if isinstance(ev, TextDelta):
                        text.append(ev.text)
                        r.answer += ev.text
                        await notify(i, ev.text, False)
        except ProviderError as e:
            r.error = (f"{name}: 无法使用（配置不全）/ not usable: {failed[name]}" if name in failed
                       else e.user_message())
            r.error_kind = e.kind
        except TimeoutError:
            r.error = f"{name}: 超过 {timeout_s:g} 秒未完成 / no complete answer within {timeout_s:g} s"
            r.error_kind = "timeout"
        except Exception as e:  # a bug on one provider's path must not take the other panels down
            log.exception("compare: %s failed", name)
            r.error = f"{name}: 内部错误 / internal error ({type(e).__name__})"
            r.error_kind = "internal"
        r.total_ms = (clock() - t0) * 1e3
        r.answer = scrub("".join(text))
        if final is not None:
            r.model = final.model or r.model
            if final.usage is not None:
                r.tokens_in = final.usage.prompt_tokens
                r.tokens_out = final.usage.completion_tokens
        if prices is not None:
            r.cost = prices.cost(name, r.model, r.tokens_in, r.tokens_out)
        r.done = True
        await notify(i, "", True)

    await _warm(router, names)
    await asyncio.gather(*(one(i) for i in range(len(results))))
    run = CompareRun(prompt, results)
    if prices is not None:
        run.currency, run.prices_as_of = prices.currency, prices.as_of
    return run


async def _warm(router: Router, names: Sequence[str]) -> None:
    """Do the HTTP stack's one-time set-up before any clock starts. The first request of a process
    builds the SDK client (TLS context) and imports lazily loaded modules: about a second here, and
    blocking, so inside one panel it would stall every other panel's clock too. Nothing is sent."""
    for n in names:
        client = getattr(router.providers.get(n), "client", None)  # OpenAICompatProvider: its shared client
        with contextlib.suppress(Exception):
            _ = client.chat.completions.with_raw_response.create  # type: ignore[union-attr]
    try:
        import anyio  # the HTTP client's async layer loads its asyncio backend on first use
    except ImportError:
        return
    await anyio.lowlevel.checkpoint()


@contextlib.asynccontextmanager
async def _timeout(seconds: float | None) -> Any:
    if seconds is None:
        yield
        return
    async with asyncio.timeout(seconds):
        yield


# --- storage and votes -------------------------------------------------------------------------------------

@dataclass
class LeaderRow:
    provider: str
    model: str
    runs: int = 0
    wins: int = 0
    ties: int = 0
    votes: int = 0

    @property
    def win_rate(self) -> float:
        return self.wins / self.runs if self.runs else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "runs": self.runs, "wins": self.wins,
                "ties": self.ties, "votes": self.votes, "win_rate": round(self.win_rate, 4)}


@dataclass
class VoteResult:
    run_id: int
    position: int
    changed: bool  # the user had voted for another answer before
    tally: list[int] = field(default_factory=list)  # votes per panel position


class CompareStore:
    """Compare runs in the store: save, vote, tally, leaderboard."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ready = False

    async def ready(self) -> None:
        # the store may have been opened before this module registered its tables
        if not self._ready:
            await self.store.migrate()
            self._ready = True

    async def save(self, run: CompareRun, *, user_id: str | None = None, guild_id: str | None = None,
                   channel_id: str | None = None) -> int:
        await self.ready()
        now = self.store.clock()
        async with self.store.engine.begin() as conn:
            res = await conn.execute(insert(compare_runs).values(
                prompt=run.prompt, user_id=user_id, guild_id=guild_id, channel_id=channel_id, created_at=now))
            run_id = int(res.inserted_primary_key[0])
            for pos, r in enumerate(run.results):
                rr = await conn.execute(insert(compare_results).values(
                    run_id=run_id, position=pos, provider=r.provider, model=r.model or "", answer=r.answer,
                    error=r.error, error_kind=r.error_kind, ttft_ms=r.ttft_ms, total_ms=r.total_ms,
                    tokens_in=r.tokens_in, tokens_out=r.tokens_out, cost=r.cost))
                r.result_id = int(rr.inserted_primary_key[0])
        run.run_id = run_id
        return run_id

    async def run(self, run_id: int) -> CompareRun | None:
        await self.ready()
        async with self.store.engine.connect() as conn:
            head = (await conn.execute(select(compare_runs).where(compare_runs.c.id == run_id))).mappings().first()
            if head is None:
                return None
            rows = (await conn.execute(select(compare_results).where(compare_results.c.run_id == run_id)
                                       .order_by(compare_results.c.position))).mappings().all()
        results = [CompareResult(r["provider"], r["model"], r["answer"], r["error"], r["ttft_ms"], r["total_ms"],
                                 r["tokens_in"], r["tokens_out"], r["cost"], r["error_kind"], True, r["id"])
                   for r in rows]
        return CompareRun(head["prompt"], results, run_id)

    async def vote(self, run_id: int, user_id: str, position: int) -> VoteResult:
        """Record (or change) `user_id`'s vote in run `run_id` for the answer at panel `position`."""
        await self.ready()
        now = self.store.clock()
        async with self.store.engine.begin() as conn:
            if (await conn.execute(select(compare_runs.c.id).where(compare_runs.c.id == run_id))).first() is None:
                raise CompareError(f"找不到对比记录 #{run_id} / no comparison #{run_id}")
            target = (await conn.execute(select(compare_results.c.id, compare_results.c.error).where(
                and_(compare_results.c.run_id == run_id, compare_results.c.position == position)))).first()
            if target is None:
                raise CompareError(f"对比 #{run_id} 没有第 {position + 1} 个回答 / no answer {position + 1} in #{run_id}")
            if target[1] is not None:
                raise CompareError("不能投给失败的回答 / cannot vote for an answer that failed")
            cond = and_(compare_votes.c.run_id == run_id, compare_votes.c.user_id == user_id)
            before = (await conn.execute(select(compare_votes.c.result_id, compare_votes.c.created_at)
                                         .where(cond))).first()
            # delete + insert in one transaction: a changed vote replaces the old one
            await conn.execute(delete(compare_votes).where(cond))
            await conn.execute(insert(compare_votes).values(
                run_id=run_id, user_id=user_id, result_id=target[0],
                created_at=before[1] if before else now, updated_at=now))
        return VoteResult(run_id, position, bool(before and before[0] != target[0]), await self.tally(run_id))

    async def tally(self, run_id: int) -> list[int]:
        """Votes per panel position."""
        await self.ready()
        async with self.store.engine.connect() as conn:
            res = (await conn.execute(select(compare_results.c.id).where(compare_results.c.run_id == run_id)
                                      .order_by(compare_results.c.position))).all()
            votes = (await conn.execute(select(compare_votes.c.result_id)
                                        .where(compare_votes.c.run_id == run_id))).all()
        ids = [r[0] for r in res]
        counts = dict.fromkeys(ids, 0)
        for (rid,) in votes:
            counts[rid] = counts.get(rid, 0) + 1
        return [counts[i] for i in ids]

    async def leaderboard(self, guild_id: str | None) -> list[LeaderRow]:
        """Models ranked by win rate in the voted runs of one guild (None: terminal runs)."""
        await self.ready()
        gcond = compare_runs.c.guild_id.is_(None) if guild_id is None else compare_runs.c.guild_id == guild_id
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(
                select(compare_results.c.id, compare_results.c.run_id, compare_results.c.provider,
                       compare_results.c.model, compare_results.c.error)
                .join(compare_runs, compare_runs.c.id == compare_results.c.run_id).where(gcond))).all()
            votes = (await conn.execute(
                select(compare_votes.c.run_id, compare_votes.c.result_id)
                .join(compare_runs, compare_runs.c.id == compare_votes.c.run_id).where(gcond))).all()
        return rank(rows, votes)


def rank(results: Sequence[Sequence[Any]], votes: Sequence[Sequence[Any]]) -> list[LeaderRow]:
    """The leaderboard rule of the module docstring. results: (id, run_id, provider, model, error);
    votes: (run_id, result_id)."""
    per_result: dict[int, int] = {}
    voted_runs: set[int] = set()
    for run_id, result_id in votes:
        voted_runs.add(run_id)
        per_result[result_id] = per_result.get(result_id, 0) + 1
    by_run: dict[int, list[Sequence[Any]]] = {}
    for row in results:
        if row[1] in voted_runs and row[4] is None:
            by_run.setdefault(row[1], []).append(row)
    board: dict[tuple[str, str], LeaderRow] = {}
    for rows in by_run.values():
        top = max(per_result.get(r[0], 0) for r in rows)
        leaders = {r[0] for r in rows if per_result.get(r[0], 0) == top and top > 0}
        for r in rows:
            entry = board.setdefault((r[2], r[3] or ""), LeaderRow(r[2], r[3] or ""))
            entry.runs += 1
            entry.votes += per_result.get(r[0], 0)
            if r[0] in leaders:
                if len(leaders) == 1:
                    entry.wins += 1
                else:
                    entry.ties += 1
    return sorted(board.values(), key=lambda e: (-e.win_rate, -e.wins, -e.votes, e.provider, e.model))


# --- entry points for the adapters ---------------------------------------------------------------------

async def run_compare(app: App, prompt: str, providers: str | Sequence[str], *, on_update: OnUpdate | None = None,
                      user_id: str | None = None, guild_id: str | None = None, channel_id: str | None = None,
                      save: bool = True, clock: Callable[[], float] = time.monotonic) -> CompareRun:
    """Compare through the App's router and store the run. A name that is not a provider at all is a
    usage error (ConfigError); a known provider that cannot be built (no key) gets its own error panel."""
    from .prices import prices_for

    names = parse_providers(providers)
    known = app.settings.known_providers
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--providers: unknown provider {', '.join(map(repr, unknown))}; allowed: {', '.join(known)}")
    failed: dict[str, str] = {}
    router = await app.router()
    for n in names:
        try:
            await app.ensure_provider(n)
        except ConfigError as e:
            failed[n] = str(e).removeprefix(f"{n}: ")
    run = await compare(router, prompt, names, prices=prices_for(app.settings), on_update=on_update,
                        clock=clock, failed=failed, caller=Caller(user_id, guild_id))
    if save:
        await CompareStore(await app.store()).save(run, user_id=user_id, guild_id=guild_id, channel_id=channel_id)
    return run


def format_panel(r: CompareResult, index: int, currency: str = "CNY") -> str:
    """One panel as plain text: a header with the figures, then the answer or the error."""
    bits = []
    if r.ttft_ms is not None:
        bits.append(f"首字 TTFT {r.ttft_ms:.0f} ms")
    if r.total_ms is not None:
        bits.append(f"总计 total {r.total_ms / 1000:.2f} s")
    if r.tokens_in is not None or r.tokens_out is not None:
        bits.append(f"tokens {r.tokens_in or 0}/{r.tokens_out or 0}")
    if r.cost is not None:
        bits.append(f"{'¥' if currency == 'CNY' else currency + ' '}{r.cost:.6f}")
    who = f"{r.provider}" + (f" · {r.model}" if r.model else "")
    head = f"── [{index + 1}] {who}  " + " · ".join(bits)
    body = f"✗ {r.error}" if r.error else (r.answer or "（空回答 / empty answer）")
    return f"{head}\n{body}\n"


async def cli_compare(app: App, prompt: str, providers: str, *, as_json: bool, out: TextIO | None = None,
                      err: TextIO | None = None) -> int:
    """`studybot compare "prompt" --providers a,b [--json]`: 0 when at least one answer came back."""
    out = out or sys.stdout
    err = err or sys.stderr

    def shown(u: PanelUpdate) -> None:
        # panels finish in any order: print each one whole as it completes (stdout), never interleaved
        if u.done:
            out.write(format_panel(u.result, u.index) + "\n")
            out.flush()

    try:
        run = await run_compare(app, prompt, providers, on_update=None if as_json else shown)
    except CompareError as e:
        err.write(f"studybot: {e}\n")
        return 2
    if as_json:
        out.write(json.dumps(run.document(), ensure_ascii=False) + "\n")
        out.flush()
    elif run.run_id is not None:
        err.write(f"对比 #{run.run_id} 已保存 / saved as comparison #{run.run_id}\n")
    return 0 if any(r.ok for r in run.results) else 1


def format_leaderboard(rows: Sequence[LeaderRow]) -> str:
    if not rows:
        return "还没有投票 / no votes yet"
    lines = ["排名 模型 胜率 (胜/平/场, 票) / rank model win-rate (wins/ties/runs, votes)"]
    for i, e in enumerate(rows, 1):
        lines.append(f"{i:>2}. {e.provider} · {e.model or '-'}  {e.win_rate:.0%} "
                     f"({e.wins}/{e.ties}/{e.runs}, {e.votes} 票)")
    return "\n".join(lines)


COMPARE_HELP = """/compare <服务商,服务商> <问题>   同一问题并排比较 / one prompt, several providers
/compare <问题>                    用回退链上的在线服务商 / the online providers of the chain
/compare vote <对比编号> <回答序号>  投票（可改票）/ vote (you may change it)
/compare top                       模型排行榜 / the leaderboard"""


async def slash_compare(app: App, arg: str, write: Callable[[str], None], *,
                        user_id: str = TERMINAL_USER) -> CompareRun | None:
    """The terminal's `/compare`: compare, `vote RUN N`, `top`. Panels are written as they finish."""
    arg = (arg or "").strip()
    head, _, rest = arg.partition(" ")
    try:
        if not arg:
            write(COMPARE_HELP)
            return None
        if head.lower() == "top":
            write(format_leaderboard(await CompareStore(await app.store()).leaderboard(None)))
            return None
        if head.lower() == "vote":
            parts = rest.split()
            if len(parts) != 2 or not all(p.lstrip("#").isdigit() for p in parts):
                write("用法 / usage: /compare vote <对比编号> <回答序号>")
                return None
            res = await CompareStore(await app.store()).vote(int(parts[0].lstrip("#")), user_id, int(parts[1]) - 1)
            verb = "已改票" if res.changed else "已投票"
            write(f"{verb} / voted: #{res.run_id} → [{res.position + 1}]  票数 / tally: {res.tally}")
            return None
        known = app.settings.known_providers
        names = [n.strip().lower() for n in head.split(",") if n.strip()]
        if names and rest.strip() and all(n in known for n in names):
            providers, prompt = names, rest
        else:  # no provider list: the chain's online providers (offline only when it is all there is)
            chain = app.settings.provider_chain
            providers = [n for n in chain if n != "offline"][:3] or chain[:1]
            prompt = arg
        run = await run_compare(app, prompt, providers, user_id=user_id,
                                on_update=lambda u: write(format_panel(u.result, u.index)) if u.done else None)
        write(f"投票 / vote: /compare vote {run.run_id} <1-{len(run.results)}>")
        return run
    except (CompareError, ConfigError) as e:
        write(str(e))
        return None
