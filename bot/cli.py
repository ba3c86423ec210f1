"""The `studybot` command line (DESIGN §3).

Rules: with --json, stdout carries only the JSON document (or JSONL rows); logs, progress
and warnings go to stderr. Imports are lazy so `studybot --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    name="studybot",
    help="学伴 studybot：学习大语言模型的助手 / a study companion for learning LLMs.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
kb_app = typer.Typer(help="知识库：建立索引与检索 / knowledge base: index and search.", rich_markup_mode=None)
providers_app = typer.Typer(help="模型服务：列表与健康检查 / LLM providers: list and check.", rich_markup_mode=None)
classify_app = typer.Typer(help="新闻与热搜分类 / classify headlines and hot-search topics.", rich_markup_mode=None)
quiz_app = typer.Typer(help="测验 / quizzes with spaced repetition.", rich_markup_mode=None)
app.add_typer(kb_app, name="kb")
app.add_typer(providers_app, name="providers")
app.add_typer(classify_app, name="classify")
app.add_typer(quiz_app, name="quiz")

JSON_OPT = typer.Option(False, "--json", help="只在 stdout 输出 JSON / JSON on stdout only.")
PROVIDER_OPT = typer.Option(None, "--provider", "-p", help="只用这个模型服务，不回退 / this provider only, no fallback.")
INPUT_OPT = typer.Option(None, "--input", "-i", help="JSONL 输入文件（默认 stdin）/ JSONL input file (default stdin).")


class Exit(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _settings() -> Any:
    from .config import load_settings
    from .logs import setup_logging

    s = load_settings()
    setup_logging(s.log_level, s.env)
    return s


def _run(fn: Callable[[Any], Coroutine[Any, Any, int | None]]) -> None:
    """Build the App, run an async command, close everything, exit with its code."""
    import asyncio

    from .app import App

    async def main() -> int | None:
        a = App(_settings())
        try:
            return await fn(a)
        finally:
            await a.aclose()

    code = asyncio.run(main())
    if code:
        raise typer.Exit(code)


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _not_yet(what: str) -> None:
    raise Exit(f"{what}：此功能尚未提供 / not yet available in this version.", 3)


# ---- chat and ask ----------------------------------------------------------------------------------

@app.command()
def chat(provider: str | None = PROVIDER_OPT) -> None:
    """终端聊天助手 / the terminal assistant (reads piped stdin when not a TTY)."""
    from .terminal import run_terminal

    _run(lambda a: run_terminal(a, provider=provider))


@app.command()
def ask(question: str = typer.Argument(..., help="问题 / the question"), provider: str | None = PROVIDER_OPT,
        json_out: bool = JSON_OPT) -> None:
    """基于学习笔记回答问题并给出出处 / answer from the study notes, with sources."""

    async def go(a: Any) -> int:
        from .app import TERMINAL_USER
        from .assistant import Assistant

        stream = None if json_out else (lambda t: (sys.stdout.write(t), sys.stdout.flush()))
        res = await Assistant(a).ask(question, provider=provider, user_id=TERMINAL_USER, on_delta=stream)
        if json_out:
            _emit_json(res.as_dict())
        else:
            if stream is None:
                print(res.answer)
            else:
                print()
            if res.tools:
                print("🔧 " + ", ".join(dict.fromkeys(t["name"] for t in res.tools)))
            if res.note:
                print(f"⚠ {res.note}", file=sys.stderr)
            if res.sources and res.provider != "offline":
                print("\n参考 / Sources:")
                for i, s in enumerate(res.sources, 1):
                    print(f"[{i}] {s['title']} › {s['section']} ({s['path']})")
        return 0 if res.ok else 1

    _run(go)


# ---- knowledge base ---------------------------------------------------------------------------------

@kb_app.command("index")
def kb_index(paths: list[Path] = typer.Argument(None, help="要加入的文件或文件夹 / files or folders to add"),
             export_builtin: Path | None = typer.Option(None, "--export-builtin", hidden=True)) -> None:
    """建立或扩充知识索引 / build or extend the knowledge index."""
    for p in paths or []:
        if not p.exists():
            raise Exit(f"找不到路径 / no such path: {p}")
    settings = _settings()
    from .app import App

    a = App(settings)
    idx = a.kb.index(list(paths or []))
    files = len(idx.meta.get("files", {}))
    print(f"索引完成 / indexed: {len(idx)} chunks from {files} files "
          f"({idx.meta.get('embedded', 0)} newly embedded)", file=sys.stderr)
    if export_builtin:
        from .knowledge.index import export_shipped_vectors

        n = export_shipped_vectors(idx, export_builtin)
        print(f"exported {n} built-in vectors to {export_builtin}", file=sys.stderr)


@kb_app.command("search")
def kb_search(query: str, k: int = typer.Option(5, "--k", "-k", min=1, max=50), json_out: bool = JSON_OPT,
              mode: str = typer.Option("hybrid", help="hybrid | embed | bm25 | bigram")) -> None:
    """检索知识库 / search the knowledge base."""
    from .knowledge.retrieve import MODES

    if mode not in MODES:
        raise Exit(f"--mode: allowed: {', '.join(MODES)}")
    from .app import App

    a = App(_settings())
    hits = a.kb.search_sync(query, k, mode)
    rows = [h.as_source() for h in hits]
    if json_out:
        _emit_json(rows)
        return
    if not rows:
        print("没有找到 / nothing found")
    for i, r in enumerate(rows, 1):
        print(f"[{i}] {r['score']:.4f}  {r['title']} › {r['section']}  ({r['path']})\n    {r['snippet'][:120]}")


# ---- providers ----------------------------------------------------------------------------------------

@providers_app.command("list")
def providers_list(json_out: bool = JSON_OPT) -> None:
    """列出已配置的模型服务 / configured providers and models."""
    from providers.presets import api_key, configured_by_default, resolve

    s = _settings()
    env = s.env
    chain = s.provider_chain
    rows = []
    for name in s.known_providers:
        p = resolve(name, env, s.extra_provider_urls)
        ready = name == "offline" or configured_by_default(name, env) or (not p.needs_key and name in chain)
        rows.append({"name": name, "label": p.label, "in_chain": name in chain,
                     "position": chain.index(name) + 1 if name in chain else None, "configured": ready,
                     "has_key": bool(api_key(p, env)) if p.key_env else None, "base_url": p.base_url,
                     "model": p.default_model or "(auto)", "models": list(p.models)})
    if json_out:
        _emit_json({"chain": chain, "providers": rows})
        return
    print(f"回退顺序 / fallback chain: {' → '.join(chain)}")
    for r in rows:
        mark = f"#{r['position']}" if r["in_chain"] else ("ready" if r["configured"] else "-")
        print(f"  {mark:>5}  {r['name']:<9} {r['model']:<22} {r['label']}")


@providers_app.command("check")
def providers_check(json_out: bool = JSON_OPT) -> None:
    """逐个探测模型服务 / probe each provider with a tiny request."""

    async def go(a: Any) -> int:
        router = await a.router()
        rows = []
        for name, p in router.providers.items():
            h = await p.health()
            rows.append({"name": name, "ok": h.ok, "status": h.status, "latency_ms": round(h.latency_ms, 1),
                         "detail": h.detail})
        if json_out:
            _emit_json(rows)
        else:
            for r in rows:
                print(f"  {r['name']:<9} {r['status']:<13} {r['latency_ms']:>8.1f} ms  {r['detail']}")
        return 0 if any(r["ok"] for r in rows) else 1

    _run(go)


# ---- later capabilities -------------------------------------------------------------------------------

@app.command()
def run(check: bool = typer.Option(False, "--check", help="只构建不连接 / build without connecting"),
        json_out: bool = JSON_OPT) -> None:
    """启动 Discord 机器人（需要 DISCORD_TOKEN）/ start the Discord bot (needs DISCORD_TOKEN)."""
    s = _settings()
    from .app import App

    if check:
        from .discord_app import check_json

        doc = check_json(App(s))
        if json_out:
            _emit_json(doc)
        else:
            print(f"commands: {', '.join(c['name'] for c in doc['commands'])}")
            print(f"intents: {doc['intents']}\nallowed_mentions: {doc['allowed_mentions']}")
        return
    if not s.discord_token:
        raise Exit("未设置 DISCORD_TOKEN，无法启动 Discord 机器人；终端助手请用 `studybot chat`。/ "
                   "DISCORD_TOKEN is not set; use `studybot chat` for the terminal assistant.")
    from .discord_app import run_bot

    raise typer.Exit(run_bot(App(s)))


def _read_rows(input: Path | None) -> list[dict[str, Any]]:
    """JSONL (or plain lines) from --input or stdin."""
    from jobs.text import parse_rows

    if input is not None:
        if not input.is_file():
            raise Exit(f"找不到输入文件 / no such input file: {input}")
        text = input.read_text(encoding="utf-8", errors="replace")
    else:
        text = "" if sys.stdin.isatty() else sys.stdin.read()
    try:
        return parse_rows(text)
    except ValueError as e:
        raise Exit(str(e)) from None


def _emit_rows(rows: list[dict[str, Any]], json_out: bool, field: str) -> None:
    for r in rows:
        if json_out:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            extra = f" / {r['sublabel']}" if field == "label" and r.get("sublabel") else ""
            print(f"{r.get(field, '')}{extra}\t{r.get('title') or r.get('word') or r.get('text') or ''}"[:300])
    sys.stdout.flush()


@classify_app.callback(invoke_without_command=True)
def classify(ctx: typer.Context, provider: str | None = PROVIDER_OPT, json_out: bool = JSON_OPT,
             input: Path | None = INPUT_OPT) -> None:
    """给标题或热搜词分类（JSONL 或纯文本行）/ classify headlines or hot-search topics (JSONL in, JSONL out)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _read_rows(input)

    async def go(a: Any) -> int:
        from jobs.classify import run_classify

        _emit_rows(await run_classify(a, rows, provider), json_out, "label")
        return 0

    _run(go)


@classify_app.command("train")
def classify_train(file: Path) -> None:
    """用标注数据训练离线分类器 / fit the offline classifier on labelled rows."""
    rows = _read_rows(file)

    async def go(a: Any) -> int:
        from jobs.classify import run_train

        try:
            res = run_train(a, rows)
        except ValueError as e:
            print(f"studybot: {e}", file=sys.stderr)
            return 1
        print(json.dumps(res, ensure_ascii=False))
        return 0

    _run(go)


@app.command()
def summarize(provider: str | None = PROVIDER_OPT, max_chars: int = typer.Option(200, "--max-chars"),
              json_out: bool = JSON_OPT, input: Path | None = INPUT_OPT) -> None:
    """摘要（JSONL 或纯文本行）/ summarise articles (JSONL in, JSONL out)."""
    rows = _read_rows(input)

    async def go(a: Any) -> int:
        from jobs.summarize import run_summarize

        try:
            out = await run_summarize(a, rows, provider, max_chars)
        except ValueError as e:
            print(f"studybot: {e}", file=sys.stderr)
            return 2
        _emit_rows(out, json_out, "summary")
        return 0

    _run(go)


@app.command()
def digest(date: str | None = typer.Option(None, "--date", help="YYYY-MM-DD（默认今天）/ default today"),
           provider: str | None = PROVIDER_OPT, json_out: bool = JSON_OPT,
           post: bool = typer.Option(False, "--post", help="发到订阅频道（需要 DISCORD_TOKEN）/ post to channels"),
           dry_run: bool = typer.Option(False, "--dry-run", help="只打印 / only print")) -> None:
    """每日简报：人民日报摘要与微博热搜分类 / the daily digest."""
    from jobs.digest_cli import digest_command

    async def go(a: Any) -> int:
        if post and not dry_run and a.settings.discord_token:
            from .discord_app import digest_sender

            async with digest_sender(a) as send:
                return await digest_command(a, date, provider, json_out, post, sys.stdout, dry_run=dry_run,
                                            send=send)
        return await digest_command(a, date, provider, json_out, post, sys.stdout, dry_run=dry_run)

    _run(go)


@quiz_app.callback(invoke_without_command=True)
def quiz(ctx: typer.Context, topic: str | None = typer.Option(None, "--topic", help="主题 slug / topic slug"),
         count: int = typer.Option(5, "--count", min=1, max=50)) -> None:
    """终端测验（管道输入时非交互）/ a quiz in the terminal (non-interactive when piped)."""
    if ctx.invoked_subcommand is None:
        from .quiz.terminal import run_quiz

        _run(lambda a: run_quiz(a, topic, count))


@quiz_app.command("bank")
def quiz_bank(json_out: bool = JSON_OPT) -> None:
    """导出题库 / dump the question bank."""

    async def go(a: Any) -> int:
        from .quiz.terminal import dump_bank, render_bank

        rows = await dump_bank(a)
        if json_out:
            _emit_json(rows)
        else:
            print(render_bank(rows))
        return 0

    _run(go)


@quiz_app.command("review")
def quiz_review(count: int = typer.Option(10, "--count", min=1, max=50)) -> None:
    """复习到期的错题 / review the questions that are due."""
    from .quiz.terminal import run_quiz

    _run(lambda a: run_quiz(a, None, count, review=True))


@quiz_app.command("stats")
def quiz_stats(json_out: bool = JSON_OPT) -> None:
    """我的测验统计 / my quiz statistics."""
    from .quiz.terminal import run_stats

    _run(lambda a: run_stats(a, json_out=json_out))


@quiz_app.command("generate")
def quiz_generate(topic: str = typer.Option(..., "--topic"), n: int = typer.Option(3, "--n", min=1, max=10),
                  focus: str | None = typer.Option(None, "--focus"), provider: str | None = PROVIDER_OPT,
                  json_out: bool = JSON_OPT) -> None:
    """用大模型根据笔记起草新题，进入审核队列 / draft new questions with an LLM into the review queue."""
    from .quiz.terminal import run_generate

    _run(lambda a: run_generate(a, topic, n, provider=provider, focus=focus, json_out=json_out))


@quiz_app.command("queue")
def quiz_queue(json_out: bool = JSON_OPT) -> None:
    """待审核的草稿 / drafts waiting for review."""
    from .quiz.terminal import run_queue

    _run(lambda a: run_queue(a, json_out=json_out))


@quiz_app.command("approve")
def quiz_approve(draft_id: int) -> None:
    """批准草稿加入题库 / approve a draft into the bank."""
    from .quiz.terminal import run_decide

    _run(lambda a: run_decide(a, "approve", draft_id))


@quiz_app.command("reject")
def quiz_reject(draft_id: int, note: str | None = typer.Option(None, "--note")) -> None:
    """拒绝草稿 / reject a draft."""
    from .quiz.terminal import run_decide

    _run(lambda a: run_decide(a, "reject", draft_id, note=note))


@app.command()
def compare(prompt: str, providers: str = typer.Option(..., "--providers", help="a,b,c"),
            json_out: bool = JSON_OPT) -> None:
    """同一问题发给多个模型并排比较（不回退）/ one prompt to several providers side by side (no fallback)."""
    from .compare import cli_compare

    _run(lambda a: cli_compare(a, prompt, providers, as_json=json_out))


@app.command()
def stats(days: int = typer.Option(7, "--days"), json_out: bool = JSON_OPT,
          chart: Path | None = typer.Option(None, "--chart", help="PNG 图表路径 / write charts to this PNG")) -> None:
    """调用记录统计 / call-record summaries."""
    from .stats import cli_stats

    _run(lambda a: cli_stats(a, days, as_json=json_out, chart=chart))


@app.command()
def report(days: int = typer.Option(7, "--days"), out: Path | None = typer.Option(None, "--out")) -> None:
    """API 使用报告（Markdown，中文）/ the API usage report."""
    from .report import cli_report

    _run(lambda a: cli_report(a, days, out))


roadmap_app = typer.Typer(help="学习路线与进度 / the study roadmap and your progress.", rich_markup_mode=None)
app.add_typer(roadmap_app, name="roadmap")


@roadmap_app.callback(invoke_without_command=True)
def roadmap(ctx: typer.Context, json_out: bool = JSON_OPT,
            step: str | None = typer.Option(None, "--step", help="步骤编号或 id / step number or id"),
            progress: bool = typer.Option(False, "--progress", help="附带我的进度 / include my progress")) -> None:
    """学习路线与进度 / the study roadmap and your progress."""
    if ctx.invoked_subcommand is None:
        from .roadmap_cli import roadmap_command

        _run(lambda a: roadmap_command(a, json_out, progress=progress, step=step))


@roadmap_app.command("done")
def roadmap_done(task_id: str, undo: bool = typer.Option(False, "--undo")) -> None:
    """标记任务完成 / mark a task done."""
    from .roadmap_cli import done_command

    _run(lambda a: done_command(a, task_id, undo=undo))


@app.command()
def plan(json_out: bool = JSON_OPT, budget: int | None = typer.Option(None, "--budget", help="每日分钟数 / minutes a day")) -> None:
    """未来 7 天的学习计划 / a study plan for the coming week."""
    from .roadmap_cli import plan_command

    _run(lambda a: plan_command(a, json_out=json_out, budget=budget))


@app.command()
def progress(out: Path | None = typer.Option(None, "--out", help="PNG 图表 / chart file"),
             days: int = typer.Option(30, "--days", min=1, max=365), json_out: bool = JSON_OPT) -> None:
    """掌握度与活跃度（可输出图表）/ mastery by topic and activity, with a chart."""
    from .roadmap_cli import progress_command

    _run(lambda a: progress_command(a, out_png=out, days=days, json_out=json_out))


@app.command()
def remind(at: str | None = typer.Argument(None, help="HH:MM | on | off"),
           tz: str | None = typer.Option(None, "--tz")) -> None:
    """每日学习提醒 / the daily study reminder."""
    from .roadmap_cli import remind_command

    _run(lambda a: remind_command(a, at=at, tz=tz))


data_app = typer.Typer(help="我的数据：导出与删除 / your data: export and delete.", rich_markup_mode=None)
app.add_typer(data_app, name="data")
USER_OPT = typer.Option(None, "--user", help="用户 id（默认终端用户；如 discord:123）/ user id (default: the terminal's)")


@data_app.command("export")
def data_export(user: str | None = USER_OPT,
                out: Path | None = typer.Option(None, "--out", help="写入文件（默认 stdout）/ file (default stdout)")) -> None:
    """导出一个用户的全部数据（JSON）/ everything stored about a user, as JSON."""
    from .privacy import export_command

    _run(lambda a: export_command(a, user, out))


@data_app.command("forget")
def data_forget(user: str | None = USER_OPT,
                yes: bool = typer.Option(False, "--yes", help="确认删除 / confirm the deletion")) -> None:
    """删除一个用户的对话、测验、进度和调用记录 / delete a user's conversations, quiz, progress and call records."""
    from .privacy import forget_command

    _run(lambda a: forget_command(a, user, yes))


def main() -> None:
    from .errors import ConfigError

    try:
        app()
    except ConfigError as e:
        print(f"studybot: 配置错误 / configuration error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exit as e:
        print(f"studybot: {e}", file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
