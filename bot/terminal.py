"""The terminal assistant (`studybot chat`): a thin adapter over the core.

Plain lines are chat; slash commands reach every capability. When stdin is not a TTY the
piped lines are answered one by one and the program exits.
"""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING, Any

from providers import ProviderError, StreamInterrupted, TextDelta

from .app import TERMINAL_USER
from .render import scrub

if TYPE_CHECKING:
    from .app import App

HELP = """命令 / commands:
  <文字>            与学伴聊天 / chat
  /ask <问题>       基于学习笔记回答并给出出处 / answer from the notes, with sources
  /model [名称]     查看或切换模型服务 / show or switch the provider
  /quiz [主题] [题数] 测验；也可 /quiz review | stats | leaderboard | stop / quiz (review, stats ...)
  /roadmap [N]      学习路线与进度 / the roadmap and your progress
  /plan [分钟]       7 天学习计划 / the 7-day plan
  /progress         掌握度与活跃度 / mastery and activity
  /remind [HH:MM|off] 每日学习提醒 / daily reminder
  /help             显示帮助 / this help
  /quit             退出 / quit
  /compare a,b 问题  多个模型并排比较 / compare providers side by side
  /stats [天数]      调用统计 / call statistics
  /digest [日期]     每日简报 / the daily digest
  /summarize <文本>  摘要 / summarise a text
  /classify <标题>   新闻分类 / classify a headline
  /export [文件]     导出我的数据（JSON）/ export my data as JSON
  /forget yes       删除我的所有数据 / delete all my data"""


class Terminal:
    def __init__(self, app: App, provider: str | None = None, out: Any = None) -> None:
        from .assistant import Assistant

        self.app = app
        self.assistant = Assistant(app)
        self.provider = provider
        self.out = out or sys.stdout
        self.conversation = f"terminal:{uuid.uuid4().hex[:12]}"
        self.quiz_cmd: Any = None  # an ongoing /quiz takes the plain lines as answers

    def write(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def dim(self, text: str) -> str:
        isatty = getattr(self.out, "isatty", None)
        return f"\033[2m{text}\033[0m" if isatty and isatty() else text

    async def handle(self, line: str) -> bool:
        """Answer one input line; False means quit."""
        line = line.strip()
        if not line:
            return True
        if self.quiz_cmd is not None and self.quiz_cmd.active and not line.startswith("/"):
            self.write(await self.quiz_cmd.feed(line))
            return True
        if line.startswith("/"):
            cmd, _, arg = line.partition(" ")
            cmd = cmd.lower()
            if cmd in ("/quit", "/exit", "/q"):
                return False
            if cmd == "/help":
                self.write(HELP)
            elif cmd == "/ask":
                await self.ask(arg)
            elif cmd == "/model":
                await self.model(arg.strip())
            elif cmd == "/quiz":
                from .quiz.terminal import QuizCommand

                self.quiz_cmd = self.quiz_cmd or QuizCommand(self.app)
                self.write(await self.quiz_cmd.command(arg.strip()))
            elif cmd == "/compare":
                from .compare import slash_compare

                await slash_compare(self.app, arg, self.write)
            elif cmd == "/stats":
                from .stats import slash_stats

                await slash_stats(self.app, arg, self.write)
            elif cmd in ("/summarize", "/classify"):
                await self.text_job(cmd, arg.strip())
            elif cmd == "/digest":
                from jobs.digest_cli import digest_command

                await digest_command(self.app, arg.strip() or None, self.provider, False, False, self.out,
                                     dry_run=True)
            elif cmd in ("/roadmap", "/plan", "/progress", "/remind"):
                from .roadmap_cli import slash

                await slash(self.app, cmd, arg, self.write)
            elif cmd in ("/export", "/forget"):
                from .privacy import slash as privacy_slash

                await privacy_slash(self.app, cmd, arg, self.write)
            else:
                self.write(f"未知命令 {cmd}，输入 /help 查看 / unknown command, try /help")
            return True
        await self.chat(line)
        return True

    async def chat(self, text: str) -> None:
        from .tools.loop import ToolNote

        note: ToolNote | None = None
        try:
            async for ev in self.assistant.chat(self.conversation, text, provider=self.provider,
                                                user_id=TERMINAL_USER):
                if isinstance(ev, TextDelta):
                    self.write(scrub(ev.text), end="")
                elif isinstance(ev, ToolNote):
                    note = ev
            self.write()
            if note is not None:
                self.write(self.dim(note.line()))
        except StreamInterrupted as e:
            self.write(f"\n⚠ {e.user_message()}")
        except ProviderError as e:
            self.write(f"抱歉，模型暂时无法回答：{e.user_message()}")

    async def ask(self, question: str) -> None:
        res = await self.assistant.ask(question, provider=self.provider, user_id=TERMINAL_USER)
        self.write(res.answer)
        if res.note:
            self.write(f"⚠ {res.note}")
        if res.sources and res.provider != "offline":
            self.write("参考 / Sources:")
            for i, s in enumerate(res.sources, 1):
                self.write(f"[{i}] {s['title']} › {s['section']} ({s['path']})")

    async def text_job(self, cmd: str, text: str) -> None:
        if not text:
            self.write("请在命令后附上文字 / add some text after the command")
            return
        if cmd == "/classify":
            from jobs.classify import run_classify

            (row,) = await run_classify(self.app, [text], self.provider)
            sub = f" / {row['sublabel']}" if row.get("sublabel") else ""
            self.write(f"{row['label']}{sub}（{row['confidence']:.2f}）")
        else:
            from jobs.summarize import run_summarize

            (row,) = await run_summarize(self.app, [text], self.provider, 200)
            self.write(scrub(row["summary"]))

    async def model(self, name: str) -> None:
        settings = self.app.settings
        if not name:
            router = await self.app.router()
            current = self.provider or f"auto ({' → '.join(router.chain)})"
            self.write(f"当前 / current: {current}\n可选 / available: {', '.join(settings.known_providers)}")
            return
        if name == "auto":
            self.provider = None
            self.write("已切换为自动回退 / switched to the fallback chain")
            return
        try:
            await self.app.ensure_provider(name)
        except Exception as e:  # a ConfigError names the missing key
            self.write(f"无法使用 {name} / cannot use {name}: {e}")
            return
        self.provider = name
        self.write(f"已切换到 / switched to: {name}")


async def run_terminal(app: App, provider: str | None = None) -> int:
    if provider:
        await app.ensure_provider(provider)
    term = Terminal(app, provider)
    if not sys.stdin.isatty():
        for line in sys.stdin.read().splitlines():
            if not await term.handle(line):
                break
        return 0
    import asyncio

    _setup_readline(app)
    term.write("学伴 studybot — 输入问题开始聊天，/help 查看命令，/quit 退出。")
    while True:
        try:
            line = await asyncio.to_thread(input, "你> ")
        except (EOFError, KeyboardInterrupt):
            term.write()
            return 0
        if not await term.handle(line):
            return 0


def _setup_readline(app: App) -> None:
    try:
        import atexit
        import readline
    except ImportError:
        return
    hist = app.settings.data_path / "chat_history"
    try:
        readline.read_history_file(hist)
    except OSError:
        pass
    readline.set_history_length(1000)
    atexit.register(lambda: _save_history(readline, hist))


def _save_history(readline: Any, hist: Any) -> None:
    try:
        readline.write_history_file(hist)
    except OSError:
        pass
