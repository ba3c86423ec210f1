"""The quiz in the terminal: `studybot quiz`, the chat's `/quiz`, and the bank dump.

Answers are lines of 1-4 or A-D read from a text stream, so piped stdin runs a whole quiz
without a TTY. Functions take the App and streams and return an exit code or data; the CLI
only wires them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from bot.app import TERMINAL_USER
from bot.render import scrub
from providers import ProviderError

from .bank import LETTERS, TOPICS, Question, default_bank
from .session import (
    DEFAULT_COUNT,
    Clock,
    Feedback,
    QuestionView,
    QuizError,
    QuizService,
    QuizSession,
    Summary,
    UserStats,
    full_bank,
    utc_now,
)
from .store import QuizStore

if TYPE_CHECKING:
    from bot.app import App

USER = TERMINAL_USER
QUIT_WORDS = {"q", "quit", "exit", "/quit", "/q", "/exit", "退出", "结束"}
_DIFF_ZH = {"easy": "简单", "medium": "中等", "hard": "困难"}
HINT = "输入 1-4 或 A-D 作答，q 结束 / answer with 1-4 or A-D, q to stop"
QUIZ_HELP = """/quiz 用法 / usage:
  /quiz [主题 topic] [题数 count]   开始测验 / start a quiz (topics: {topics})
  /quiz review [题数]               复习到期的错题 / review due questions
  /quiz stats                       我的成绩 / my stats
  /quiz leaderboard                 排行榜 / leaderboard
  /quiz stop                        结束当前测验 / stop the current quiz
  /quiz generate <主题> [n]         用大模型出题（待审核）/ draft questions with an LLM (for review)
  /quiz queue | approve <id> | reject <id>   审核出题草稿 / review drafts"""


def parse_choice(line: str) -> int | None:
    """'1'-'4', 'A'-'D' (any case, full-width too, with trailing punctuation) → 0-3."""
    s = unicodedata.normalize("NFKC", line).strip().rstrip(".)、:：。").strip().upper()
    if len(s) != 1:
        return None
    if s in "1234":
        return int(s) - 1
    if s in LETTERS:
        return LETTERS.index(s)
    return None


def _when(dt: datetime | None, tz: ZoneInfo) -> str:
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M") if dt else "-"


def render_question(v: QuestionView) -> str:
    q = v.question
    tag = "复习 / review · " if v.mode == "review" else ""
    lines = [f"[{v.index + 1}/{v.total}] {tag}({_DIFF_ZH.get(q.difficulty, q.difficulty)} / {q.difficulty}) "
             f"{scrub(q.question)}"]
    lines += [f"  {LETTERS[i]}. {scrub(o)}" for i, o in enumerate(q.options)]
    return "\n".join(lines)


def render_feedback(fb: Feedback, tz: ZoneInfo) -> str:
    right = f"{LETTERS[fb.answer]}. {scrub(fb.answer_text)}"
    if fb.reason == "duplicate":
        head = f"已作答过此题，不重复计分 / already answered, not counted again (正确答案 / answer: {right})"
    elif fb.reason != "ok":
        head = f"此题已关闭 / this question is closed ({fb.reason})"
    elif fb.correct:
        head = f"✓ 正确 / correct  +{fb.points} 分 / points"
    else:
        head = f"✗ 错误 / wrong — 正确答案 / answer: {right}"
    lines = [head, f"解析 / why: {scrub(fb.explanation)}", f"参考 / see: {fb.ref['path']} › {fb.ref['heading']}"]
    if fb.accepted and fb.next_due is not None:
        lines.append(f"已加入复习 / added to reviews — 下次 / next: {_when(fb.next_due, tz)}")
    return "\n".join(lines)


def render_summary(s: Summary, tz: ZoneInfo) -> str:
    early = "" if s.answered >= s.total else f"（提前结束 / stopped early: {s.answered}/{s.total}）"
    lines = [f"得分 / score: {s.correct}/{s.total} 正确 / correct · {s.points} 分 / points{early}",
             f"连续学习 / streak: {s.streak} 天 / day(s)"]
    if s.missed:
        lines.append(f"错题 / missed: {', '.join(s.missed)}")
    if s.due_now:
        lines.append(f"待复习 / due for review: {s.due_now}（studybot quiz review）")
    elif s.next_due:
        lines.append(f"下次复习 / next review: {_when(s.next_due, tz)}")
    return "\n".join(lines)


def render_stats(st: UserStats, tz: ZoneInfo) -> str:
    lines = [f"成绩 / stats: {st.points} 分 / points · {st.correct}/{st.answered} 正确 / correct "
             f"({st.accuracy:.0%}) · {st.sessions} 次测验 / sessions",
             f"连续学习 / streak: {st.streak} 天（最长 {st.best_streak}）/ days (best {st.best_streak})",
             f"复习卡片 / review cards: {st.cards} · 到期 / due: {st.due_now} · 下次 / next: {_when(st.next_due, tz)}"]
    for t, (c, n) in sorted(st.topics.items()):
        lines.append(f"  {t}: {c}/{n}")
    return "\n".join(lines)


def render_board(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "排行榜还是空的 / the leaderboard is empty"
    return "\n".join(f"{r['rank']:>2}. {r['user_id']}  {r['points']} 分 / pts  ({r['correct']}/{r['answered']})"
                     for r in rows)


class TerminalQuiz:
    """One quiz as a line-in, text-out conversation (used by `run_quiz` and the chat's /quiz)."""

    def __init__(self, service: QuizService, *, user: str = USER, topic: str | None = None,
                 count: int = DEFAULT_COUNT, review: bool = False) -> None:
        self.service = service
        self.user = user
        self.topic = topic
        self.count = count
        self.review = review
        self.session: QuizSession | None = None
        self.view: QuestionView | None = None
        self.summary: Summary | None = None
        self.done = False

    async def start(self) -> str:
        svc = self.service
        if self.review:
            self.session = await svc.start_review(self.user, self.count)
            if self.session is None:
                self.done = True
                st = await svc.stats(self.user)
                return f"没有到期的复习 / nothing due for review — 下次 / next: {_when(st.next_due, svc.tz)}"
            title = "复习 / Review"
        else:
            self.session = await svc.start(self.user, self.topic, self.count)
            title = f"测验 / Quiz · {self.topic or '综合 / mixed'}"
        self.view = await self.session.next_question()
        assert self.view is not None
        return f"{title} · {self.view.total} 题 / questions（{HINT}）\n\n{render_question(self.view)}"

    async def handle(self, line: str) -> str:
        if self.done or self.session is None or self.view is None:
            return ""
        if line.strip().lower() in QUIT_WORDS:
            return await self.stop()
        choice = parse_choice(line)
        if choice is None:
            return f"请{HINT}"
        fb = await self.session.answer(self.user, choice, question_id=self.view.question.id)
        parts = [render_feedback(fb, self.service.tz)]
        self.view = await self.session.next_question()
        if self.view is None:
            parts.append(await self._finish())
        else:
            parts.append(render_question(self.view))
        return "\n\n".join(parts)

    async def stop(self) -> str:
        return "" if self.done or self.session is None else await self._finish()

    async def _finish(self) -> str:
        assert self.session is not None
        self.summary = await self.session.finish(self.user)
        self.done = True
        return render_summary(self.summary, self.service.tz)


def _write(out: TextIO, text: str) -> None:
    if text:
        out.write(text + "\n")
        out.flush()


async def run_quiz(app: App, topic: str | None = None, count: int = DEFAULT_COUNT, inp: TextIO | None = None,
                   out: TextIO | None = None, clock: Clock = utc_now, *, review: bool = False, user: str = USER,
                   err: TextIO | None = None, service: QuizService | None = None) -> int:
    """`studybot quiz [--topic T] [--count N]`: a whole quiz over text streams; returns the exit code."""
    inp, out, err = inp or sys.stdin, out or sys.stdout, err or sys.stderr
    try:
        svc = service or await QuizService.for_app(app, clock=clock)
        quiz = TerminalQuiz(svc, user=user, topic=topic, count=count, review=review)
        _write(out, await quiz.start())
    except QuizError as e:
        _write(err, f"studybot quiz: {e}")
        return 2
    tty = inp.isatty()
    while not quiz.done:
        if tty:
            out.write("答案 / answer> ")
            out.flush()
        line = await asyncio.to_thread(inp.readline)
        if not line:  # end of input: finish with what was answered
            _write(out, "\n" + await quiz.stop())
            break
        _write(out, "\n" + await quiz.handle(line) if line.strip() else "")
    return 0


class QuizCommand:
    """The chat terminal's `/quiz ...` command; while a quiz runs, plain lines are its answers."""

    def __init__(self, app: App, *, user: str = USER, clock: Clock = utc_now) -> None:
        self.app = app
        self.user = user
        self.clock = clock
        self._service: QuizService | None = None
        self.quiz: TerminalQuiz | None = None

    @property
    def active(self) -> bool:
        return self.quiz is not None and not self.quiz.done

    async def service(self) -> QuizService:
        if self._service is None:
            self._service = await QuizService.for_app(self.app, clock=self.clock)
        return self._service

    async def feed(self, line: str) -> str:
        return await self.quiz.handle(line) if self.quiz else ""

    async def command(self, arg: str) -> str:
        words = arg.split()
        head = words[0].lower() if words else ""
        try:
            if head in ("help", "-h", "--help", "帮助"):
                return QUIZ_HELP.format(topics=", ".join(TOPICS))
            if head == "stop":
                return await self.quiz.stop() if self.active and self.quiz else "没有进行中的测验 / no quiz running"
            svc = await self.service()
            if head == "stats":
                return render_stats(await svc.stats(self.user), svc.tz)
            if head in ("leaderboard", "board", "排行榜"):
                return render_board(await svc.leaderboard(None))
            if head == "generate":
                return await self._generate(words[1:])
            if head in ("queue", "approve", "reject"):
                return await self._queue(head, words[1:])
            if self.active and self.quiz:
                await self.quiz.stop()
            review = head == "review"
            rest = words[1:] if review else words
            topic = next((w for w in rest if not w.isdigit()), None)
            count = int(next((w for w in rest if w.isdigit()), DEFAULT_COUNT))
            quiz = TerminalQuiz(svc, user=self.user, topic=topic, count=count, review=review)
            text = await quiz.start()
            self.quiz = quiz
            return text
        except QuizError as e:
            return str(e)

    async def _generate(self, args: list[str]) -> str:
        from .generate import generate_questions

        if not args:
            return "用法 / usage: /quiz generate <topic> [n]"
        n = int(args[1]) if len(args) > 1 and args[1].isdigit() else 3
        try:
            rep = await generate_questions(self.app, args[0].lower(), n)
        except ProviderError as e:
            return f"出题失败 / generation failed: {e.user_message()}"
        return render_generate(rep.as_dict())

    async def _queue(self, what: str, args: list[str]) -> str:
        svc = await self.service()
        if what == "queue":
            return render_queue(await svc.qstore.drafts("pending"))
        if not args or not args[0].isdigit():
            return f"用法 / usage: /quiz {what} <id>"
        return await decide(self.app, what, int(args[0]), by=self.user, note=" ".join(args[1:]) or None,
                            service=svc)


# ---- bank dump, generation, review queue (CLI-facing) -------------------------------------------------

def dump_bank_json(extra: Iterable[Question] = ()) -> list[dict[str, Any]]:
    """DESIGN §3: [{"id","topic","question","options","answer","explanation","difficulty","ref":{...}}]."""
    bank = default_bank()
    extra = list(extra)
    return (bank.with_extra(extra) if extra else bank).dump()


async def dump_bank(app: App) -> list[dict[str, Any]]:
    """The built-in bank plus approved generated questions from the database."""
    qstore = await QuizStore.attach(await app.store())
    return (await full_bank(qstore)).dump()


def render_bank(rows: list[dict[str, Any]]) -> str:
    """`studybot quiz bank` without --json: questions per topic and difficulty."""
    lines = [f"题库 / question bank: {len(rows)} 题 / questions"]
    for t in TOPICS:
        mine = [r for r in rows if r["topic"] == t]
        by = " ".join(f"{d}={sum(1 for r in mine if r['difficulty'] == d)}" for d in ("easy", "medium", "hard"))
        lines.append(f"  {t:<20} {len(mine):>3}  ({by})")
    return "\n".join(lines)


def render_generate(rep: dict[str, Any]) -> str:
    lines = [f"出题 / generated for {rep['topic']} via {rep['provider'] or '-'}: "
             f"{len(rep['queued'])} 待审 / queued, {len(rep['rejected'])} 被拒 / rejected, "
             f"{rep['duplicates']} 重复 / duplicates"]
    lines += [f"  #{d['id']} {scrub(d['question'])}" for d in rep["queued"]]
    lines += [f"  ✗ {scrub(r)}" for r in rep["rejected"]]
    if rep["queued"]:
        lines.append("审核 / review: studybot quiz queue · studybot quiz approve <id>")
    return "\n".join(lines)


def render_queue(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "没有待审核的草稿 / no drafts waiting for review"
    out: list[str] = []
    for r in rows:
        p = r["payload"]
        out.append(f"#{r['id']} [{r['topic']}] {scrub(p['question'])}")
        out += [f"   {'*' if i == p['answer'] else ' '}{LETTERS[i]}. {scrub(o)}" for i, o in enumerate(p["options"])]
        out.append(f"   解析 / why: {scrub(p['explanation'])}  ({p['ref']['path']} › {p['ref']['heading']})")
    return "\n".join(out)


async def decide(app: App, what: str, draft_id: int, *, by: str | None = None, note: str | None = None,
                 service: QuizService | None = None) -> str:
    """approve | reject one draft; returns the message to show. QuizError on a bad id or a bad draft."""
    from .generate import approve, reject

    qstore = service.qstore if service else await QuizStore.attach(await app.store())
    if what == "approve":
        q = await approve(qstore, draft_id, by=by)
        if service:
            await service.reload_bank()
        return f"已加入题库 / added to the bank: {q.id}"
    await reject(qstore, draft_id, by=by, note=note)
    return f"已拒绝 / rejected draft #{draft_id}"


async def run_generate(app: App, topic: str, n: int = 3, *, provider: str | None = None, focus: str | None = None,
                       json_out: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`studybot quiz generate --topic T [--n N] [--focus TEXT] [--provider P] [--json]`."""
    from .generate import generate_questions

    out, err = out or sys.stdout, err or sys.stderr
    try:
        rep = await generate_questions(app, topic, n, provider=provider, focus=focus)
    except QuizError as e:
        _write(err, f"studybot quiz generate: {e}")
        return 2
    except ProviderError as e:
        _write(err, f"studybot quiz generate: {e.user_message()}")
        return 1
    _write(out, json.dumps(rep.as_dict(), ensure_ascii=False) if json_out else render_generate(rep.as_dict()))
    return 0 if rep.queued or rep.duplicates else 1


async def run_queue(app: App, *, json_out: bool = False, out: TextIO | None = None) -> int:
    """`studybot quiz queue [--json]`: drafts waiting for review."""
    out = out or sys.stdout
    rows = await (await QuizStore.attach(await app.store())).drafts("pending")
    if json_out:
        _write(out, json.dumps([{"id": r["id"], "topic": r["topic"], **r["payload"]} for r in rows],
                               ensure_ascii=False))
    else:
        _write(out, render_queue(rows))
    return 0


async def run_decide(app: App, what: str, draft_id: int, *, note: str | None = None, by: str = USER,
                     out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`studybot quiz approve ID` / `studybot quiz reject ID [--note ...]`."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        _write(out, await decide(app, what, draft_id, by=by, note=note))
    except QuizError as e:
        _write(err, f"studybot quiz {what}: {e}")
        return 2
    return 0


async def run_stats(app: App, *, json_out: bool = False, user: str = USER, out: TextIO | None = None,
                    clock: Clock = utc_now) -> int:
    """`studybot quiz stats [--json]`."""
    out = out or sys.stdout
    svc = await QuizService.for_app(app, clock=clock)
    st = await svc.stats(user)
    _write(out, json.dumps(st.as_dict(), ensure_ascii=False) if json_out else render_stats(st, svc.tz))
    return 0


__all__ = ["QuizCommand", "TerminalQuiz", "decide", "dump_bank", "dump_bank_json", "parse_choice", "render_bank",
           "run_decide", "run_generate", "run_queue", "run_quiz", "run_stats"]
