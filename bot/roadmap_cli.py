"""Roadmap, plan, progress and reminder commands for the CLI, the terminal and the Discord adapter.

Two layers: `*_text` / `mark_task` / `progress_report` / `reminder_setting` return what a user sees
(raising ProgressError with a Chinese and English message), and the `*_command` functions wrap
them for `studybot ...` (write to `out`, errors to `err`, return an exit code). `slash` serves the
terminal's `/roadmap`, `/plan`, `/progress` and `/remind`.

`studybot roadmap --json` stays the DESIGN §3 document (`roadmap_json()`, no database opened);
`--progress` adds per-step fields (`number`, `done_tasks`, `tasks_total`, `mastery`, `complete`,
`state`) and a top-level `progress` block.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bot.quiz.srs import UTC, utc

from .app import TERMINAL_USER
from .plan import check_budget, plan_for, render_plan, topic_titles
from .progress import (
    MASTERY_THRESHOLD,
    ProgressError,
    ProgressStore,
    ServerProgress,
    StepProgress,
    UserProgress,
    find_task,
    local_days,
    per_day,
    server_progress,
    user_progress,
)
from .roadmap import RoadmapError, Step, roadmap_json
from .roadmap import load as load_roadmap

if TYPE_CHECKING:
    from bot.app import App
    from bot.charts import Chart

USER = TERMINAL_USER
ACTIVITY_DAYS = 14
STATE_MARK = {"done": "✓", "current": "▶", "todo": "·"}


def _now(now: datetime | None) -> datetime:
    return utc(now) if now is not None else datetime.now(UTC)


def _write(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def _emit(out: TextIO, obj: Any) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    out.flush()


async def _progress(app: App, user: str, now: datetime | None) -> tuple[ProgressStore, UserProgress]:
    ps = await ProgressStore.for_app(app)
    return ps, await user_progress(ps, user, _now(now), tz=app.settings.tz)


def _pct(x: float) -> str:
    return f"{x:.0%}"


# ---- the path -------------------------------------------------------------------------------------------

def resolve_step(ref: str | int, steps: Sequence[Step] | None = None) -> tuple[int, Step]:
    """`3` (1-based number) or a step id (`qs3`, `rlhf`) → (number, step)."""
    steps = steps if steps is not None else load_roadmap()
    key = str(ref).strip()
    if key.isdigit() and 1 <= int(key) <= len(steps):
        return int(key), steps[int(key) - 1]
    for i, s in enumerate(steps, 1):
        if s.id == key.lower():
            return i, s
    raise ProgressError(f"没有第 {key} 步：请用 1-{len(steps)} 或步骤 id（如 qs1、rlhf）/ no step {key!r}: "
                        f"use 1-{len(steps)} or a step id (e.g. qs1, rlhf)")


def render_roadmap(up: UserProgress) -> str:
    cur = up.current
    where = f"{cur.number}. {cur.step.title}" if cur else "全部完成 / all done"
    lines = [f"学习路线 / study roadmap · 已完成 {up.completed}/{len(up.steps)} 步 · 当前 / current: {where}"]
    for sp in up.steps:
        s = sp.step
        lines.append(f"{STATE_MARK[sp.state]} {sp.number:>2}. [{s.id}] {s.title}  任务 {len(sp.done_tasks)}/"
                     f"{sp.tasks_total} · 掌握度 {_pct(sp.mastery)}  (~{s.est_hours:g} h)")
    lines.append(f"步骤详情 / details: studybot roadmap --step N · 标记完成 / mark done: studybot roadmap done "
                 f"TASK_ID · 一步完成 = 任务全部完成且测验掌握度 ≥ {_pct(MASTERY_THRESHOLD)}")
    return "\n".join(lines)


def roadmap_progress_json(up: UserProgress) -> dict[str, Any]:
    doc = roadmap_json()
    for s, sp in zip(doc["steps"], up.steps, strict=True):
        s.update({k: v for k, v in sp.as_dict().items() if k != "id"})
    doc["progress"] = up.as_dict()
    return doc


async def roadmap_text(app: App, user: str = USER, now: datetime | None = None) -> str:
    _, up = await _progress(app, user, now)
    return render_roadmap(up)


def render_step(sp: StepProgress, up: UserProgress) -> str:
    s = sp.step
    names = topic_titles()
    lines = [f"{sp.number}. {s.title}（{s.id} · {s.stage}）~{s.est_hours:g} h · {STATE_MARK[sp.state]} 任务 "
             f"{len(sp.done_tasks)}/{sp.tasks_total} · 掌握度 {_pct(sp.mastery)}（需 / needs {_pct(MASTERY_THRESHOLD)}）",
             "目标 / goals:"]
    lines += [f"  - {g}" for g in s.goals]
    lines.append("任务 / tasks:")
    for t in s.tasks:
        mark = "✓" if t.id in sp.done_tasks else " "
        lines.append(f"  [{mark}] {t.id}  {t.title}")
        lines.append(f"        产出 / output: {t.output}")
        if t.commands:
            lines.append(f"        命令 / commands: {' · '.join(t.commands)}")
    lines.append(f"笔记 / notes: {', '.join(s.notes) or '-'}")
    quiz = []
    for t in s.quiz_topics:
        tm = up.topics.get(t)
        shown = "未测 / not quizzed" if tm is None or not tm.answered else _pct(tm.mastery)
        quiz.append(f"{names.get(t, t)}（{t}）{shown}")
    lines.append(f"测验 / quiz: {' · '.join(quiz) or '-'}")
    lines.append(f"相关命令 / commands: {' · '.join(s.commands) or '-'}")
    lines.append(f"完成任务后 / when done: studybot roadmap done {s.tasks[0].id}")
    return "\n".join(lines)


async def step_text(app: App, ref: str | int, user: str = USER, now: datetime | None = None) -> str:
    n, _ = resolve_step(ref)
    _, up = await _progress(app, user, now)
    return render_step(up.steps[n - 1], up)


async def mark_task(app: App, user: str, task_id: str, *, undo: bool = False, guild: str | None = None,
                    now: datetime | None = None) -> str:
    """Mark (or unmark) a task; the message says what changed and where the learner stands."""
    ps = await ProgressStore.for_app(app)
    step, task = find_task(task_id)
    t = _now(now)
    if undo:
        changed = await ps.unmark(user, task.id)
        head = (f"已取消完成标记 / unmarked: {task.id}" if changed
                else f"{task.id} 本来就未完成 / was not marked done")
    else:
        changed = await ps.mark(user, task.id, t, guild)
        head = (f"✓ 已完成 / done: {task.id} {task.title}" if changed
                else f"{task.id} 已经标记过完成 / already marked done")
    up = await user_progress(ps, user, t, tz=app.settings.tz)
    sp = next(p for p in up.steps if p.step.id == step.id)
    lines = [head, f"第 {sp.number} 步 {step.title}：任务 {len(sp.done_tasks)}/{sp.tasks_total} · 掌握度 "
                   f"{_pct(sp.mastery)}"]
    if len(sp.done_tasks) == sp.tasks_total and not sp.complete:
        topics = ", ".join(step.quiz_topics)
        lines.append(f"任务都完成了；测验掌握度达到 {_pct(MASTERY_THRESHOLD)} 即完成本步 / all tasks done: reach "
                     f"{_pct(MASTERY_THRESHOLD)} mastery to finish the step (studybot quiz --topic …: {topics})")
    cur = up.current
    lines.append(f"当前步骤 / current step: {cur.number}. {cur.step.title}" if cur else "路线全部完成！/ roadmap done!")
    return "\n".join(lines)


# ---- the plan ------------------------------------------------------------------------------------------------

async def plan_text(app: App, user: str = USER, budget: int | str | None = None, *, save_budget: bool = False,
                    now: datetime | None = None) -> str:
    """The week's plan as text; `save_budget` keeps `budget` as the user's daily minutes."""
    try:
        chosen = check_budget(budget) if budget not in (None, "") else None
    except ValueError as e:
        raise ProgressError(str(e)) from None
    ps = await ProgressStore.for_app(app)
    if save_budget and chosen is not None:
        await ps.set_prefs(user, _now(now), budget_min=chosen)
    plan = await plan_for(ps, user, _now(now), tz=app.settings.tz, budget=chosen)
    return render_plan(plan)


# ---- progress and the chart -------------------------------------------------------------------------------------

@dataclass(slots=True)
class ProgressReport:
    text: str
    data: dict[str, Any]
    chart: Chart | None = None
    warnings: list[str] = field(default_factory=list)


def _summary(up: UserProgress) -> str:
    names = topic_titles()
    cur = up.current
    lines = [f"学习进度 / progress · 已完成 {up.completed}/{len(up.steps)} 步 · 当前 / current: "
             + (f"{cur.number}. {cur.step.title}" if cur else "全部完成 / all done")]
    seen = [m for m in up.topics.values() if m.answered]
    if not seen:
        lines.append("还没有测验记录：试试 studybot quiz / no quiz answers yet: try studybot quiz")
    for m in sorted(seen, key=lambda m: -m.mastery):
        r = "-" if m.retrievability is None else _pct(m.retrievability)
        lines.append(f"  {names.get(m.topic, m.topic)}（{m.topic}）掌握度 {_pct(m.mastery)} · 正确率 {_pct(m.accuracy)}"
                     f"（{m.correct}/{m.answered}）· 记忆保持 {r}")
    return "\n".join(lines)


def _server_summary(sv: ServerProgress) -> str:
    names = topic_titles()
    steps = {s.id: (i, s.title) for i, s in enumerate(load_roadmap(), 1)}
    lines = [f"服务器学习进度 / server progress · 成员 {len(sv.members)} 人 · 已走完路线 {sv.finished} 人"]
    for sid, n in sorted(sv.at_step.items(), key=lambda kv: steps.get(kv[0], (99, ""))[0]):
        i, title = steps.get(sid, (0, sid))
        lines.append(f"  第 {i} 步 {title}：{n} 人")
    for t, (m, k) in sv.topics.items():
        if k:
            lines.append(f"  {names.get(t, t)}（{t}）平均掌握度 {_pct(m)} · {k} 人")
    return "\n".join(lines)


async def progress_report(app: App, out_png: str | Path | None = None, *, user: str | None = USER,
                          guild: str | None = None, days: int = ACTIVITY_DAYS,
                          now: datetime | None = None) -> ProgressReport:
    """A user's progress (or a server's, with `guild`) as text and data, and the PNG when asked."""
    from .progress_chart import progress_chart

    if not 1 <= days <= 366:
        raise ProgressError(f"天数须在 1-366 之间 / days must be 1-366, got {days}")
    t = _now(now)
    tz = app.settings.tz
    ps = await ProgressStore.for_app(app)
    span = local_days(t, days, tz)
    since = datetime.combine(span[0], datetime.min.time(), tzinfo=app.settings.zone).timestamp()
    if guild is not None:
        sv = await server_progress(ps, guild, t, tz=tz)
        mastery = {k: m for k, (m, _) in sv.topics.items()}
        learners: dict[str, int] | None = {k: n for k, (_, n) in sv.topics.items()}
        events = await ps.activity(guild=guild, since=since)
        text, data = _server_summary(sv), sv.as_dict()
    else:
        up = await user_progress(ps, user or USER, t, tz=tz)
        tz = up.tz
        span = local_days(t, days, tz)
        mastery = {k: m.mastery for k, m in up.topics.items()}
        learners = None
        events = await ps.activity(user=up.user_id, since=since - 86400)
        text, data = _summary(up), up.as_dict()
    right, wrong = per_day(events, span, tz)
    data["activity"] = [{"date": d.isoformat(), "right": r, "wrong": w} for d, r, w in zip(span, right, wrong,
                                                                                          strict=True)]
    report = ProgressReport(text, data)
    if out_png is not None:
        # matplotlib takes 0.5-1.7 s: off the event loop, which may be serving a bot
        chart = await asyncio.to_thread(progress_chart, mastery, span, right, wrong, out_png, server=guild is not None,
                                        learners=learners, tz=tz, threshold=MASTERY_THRESHOLD)
        report.chart, report.warnings = chart, list(chart.warnings)
        data["png"] = str(chart.path)
        report.text += f"\n图表已保存 / chart saved: {chart.path}"
    return report


# ---- reminders ----------------------------------------------------------------------------------------------------

async def reminder_setting(app: App, user: str, arg: str | None, *, tz: str | None = None,
                           channel: str | None = None, guild: str | None = None,
                           now: datetime | None = None) -> str:
    """`HH:MM` on, `off`, `on`, or empty (show the setting)."""
    from .reminders import next_reminder_at, pref_of, set_reminder

    ps = await ProgressStore.for_app(app)
    t = _now(now)
    if arg is not None and arg.strip():
        row = await set_reminder(ps, user, arg, t, tz=tz, channel_id=channel, guild_id=guild)
    else:
        row = await ps.prefs(user) or {"user_id": user}
    pref = pref_of(row, app.settings.tz)
    if not pref.enabled:
        when = f"（上次设定 / last set: {pref.at}）" if pref.at else ""
        return f"每日学习提醒已关闭 / daily study reminder is off{when}。开启 / turn on: remind HH:MM（如 08:00）"
    from jobs.scheduler import last_runs

    last = (await last_runs(ps.store, "reminder")).get(user)
    nxt = next_reminder_at(t, pref, last)
    lines = [f"每日学习提醒已开启：每天 {pref.at}（{pref.tz}）/ daily study reminder on at {pref.at} ({pref.tz})"]
    if nxt is not None:
        lines.append(f"下次提醒 / next: {nxt.strftime('%Y-%m-%d %H:%M')} · 关闭 / stop: remind off")
    if not user.startswith("discord:"):
        lines.append("提醒由 Discord 机器人发送（studybot run）；终端不会弹出提醒 / reminders are delivered by the "
                     "Discord bot, not the terminal")
    return "\n".join(lines)


# ---- `studybot ...` wrappers: stdout for results, stderr for errors, exit codes --------------------------------------

def _fail(err: TextIO | None, e: Exception) -> int:
    _write(err or sys.stderr, f"studybot: {e}")
    return 2


async def roadmap_command(app: App, json_out: bool = False, user: str = USER, out: TextIO | None = None, *,
                          progress: bool = False, step: str | None = None, err: TextIO | None = None,
                          now: datetime | None = None) -> int:
    """`studybot roadmap [--json] [--progress] [--step N]`."""
    out = out or sys.stdout
    try:
        if step is not None:
            return await step_command(app, step, user, out, json_out=json_out, err=err, now=now)
        if json_out and not progress:
            _emit(out, roadmap_json())  # DESIGN §3 shape; no database needed
            return 0
        _, up = await _progress(app, user, now)
        if json_out:
            _emit(out, roadmap_progress_json(up))
        else:
            _write(out, render_roadmap(up))
        return 0
    except (ProgressError, RoadmapError) as e:
        return _fail(err, e)


async def step_command(app: App, n: str | int, user: str = USER, out: TextIO | None = None, *,
                       json_out: bool = False, err: TextIO | None = None, now: datetime | None = None) -> int:
    """`studybot roadmap --step N`: the details of a step (N = 1-based number or step id)."""
    out = out or sys.stdout
    try:
        number, step = resolve_step(n)
        _, up = await _progress(app, user, now)
    except (ProgressError, RoadmapError) as e:
        return _fail(err, e)
    sp = up.steps[number - 1]
    if json_out:
        doc = step.as_dict()
        doc.update({k: v for k, v in sp.as_dict().items() if k != "id"})
        doc["topics"] = {t: up.topics[t].as_dict() for t in step.quiz_topics if t in up.topics}
        _emit(out, doc)
    else:
        _write(out, render_step(sp, up))
    return 0


async def done_command(app: App, task_id: str, user: str = USER, out: TextIO | None = None, *, undo: bool = False,
                       err: TextIO | None = None, now: datetime | None = None) -> int:
    """`studybot roadmap done TASK_ID [--undo]`."""
    try:
        _write(out or sys.stdout, await mark_task(app, user, task_id, undo=undo, now=now))
        return 0
    except ProgressError as e:
        return _fail(err, e)


async def plan_command(app: App, user: str = USER, out: TextIO | None = None, *, json_out: bool = False,
                       budget: int | None = None, err: TextIO | None = None, now: datetime | None = None) -> int:
    """`studybot plan [--budget MIN] [--json]` (a given budget is saved as the user's daily minutes)."""
    out = out or sys.stdout
    try:
        chosen = check_budget(budget) if budget is not None else None
    except ValueError as e:
        return _fail(err, e)
    ps = await ProgressStore.for_app(app)
    if chosen is not None:
        await ps.set_prefs(user, _now(now), budget_min=chosen)
    plan = await plan_for(ps, user, _now(now), tz=app.settings.tz, budget=chosen)
    if json_out:
        _emit(out, plan.as_dict())
    else:
        _write(out, render_plan(plan))
    return 0


async def progress_command(app: App, user: str = USER, out_png: str | Path | None = None, out: TextIO | None = None,
                           *, guild: str | None = None, days: int = ACTIVITY_DAYS, json_out: bool = False,
                           err: TextIO | None = None, now: datetime | None = None) -> int:
    """`studybot progress [--out FILE.png] [--days N] [--json]`."""
    out = out or sys.stdout
    try:
        rep = await progress_report(app, out_png, user=user, guild=guild, days=days, now=now)
    except ProgressError as e:
        return _fail(err, e)
    for w in rep.warnings:
        _write(err or sys.stderr, f"studybot: {w}")
    if json_out:
        _emit(out, rep.data)
    else:
        _write(out, rep.text)
    return 0


async def remind_command(app: App, user: str = USER, at: str | None = None, out: TextIO | None = None, *,
                         tz: str | None = None, err: TextIO | None = None, now: datetime | None = None) -> int:
    """`studybot remind [HH:MM|off|on] [--tz ZONE]` (no argument: show the setting)."""
    try:
        _write(out or sys.stdout, await reminder_setting(app, user, at, tz=tz, now=now))
        return 0
    except ProgressError as e:
        return _fail(err, e)


# ---- the terminal's slash commands ------------------------------------------------------------------------------------

SLASH_HELP = {
    "/roadmap": "/roadmap [N | step N | done ID | undo ID]  学习路线与进度 / the roadmap and your progress",
    "/plan": "/plan [每日分钟数]  7 天学习计划 / the 7-day plan",
    "/progress": "/progress [图表.png]  掌握度与活跃度 / mastery and activity",
    "/remind": "/remind [HH:MM|off]  每日学习提醒 / daily study reminder",
}


async def slash(app: App, cmd: str, arg: str, write: Callable[[str], Any], user: str = USER,
                now: datetime | None = None) -> None:
    """The terminal's `/roadmap`, `/plan`, `/progress` and `/remind` (errors are shown, not raised)."""
    words = arg.split()
    try:
        if cmd == "/roadmap":
            if not words:
                write(await roadmap_text(app, user, now))
            elif words[0] in ("done", "undo") and len(words) == 2:
                write(await mark_task(app, user, words[1], undo=words[0] == "undo", now=now))
            elif words[0] == "step" and len(words) == 2:
                write(await step_text(app, words[1], user, now))
            elif len(words) == 1:
                write(await step_text(app, words[0], user, now))
            else:
                write(f"用法 / usage: {SLASH_HELP['/roadmap']}")
        elif cmd == "/plan":
            write(await plan_text(app, user, words[0] if words else None, save_budget=bool(words), now=now))
        elif cmd == "/progress":
            rep = await progress_report(app, words[0] if words else None, user=user, now=now)
            write(rep.text)
        elif cmd == "/remind":
            write(await reminder_setting(app, user, words[0] if words else None, now=now))
        else:
            write(f"未知命令 / unknown command {cmd}")
    except (ProgressError, RoadmapError) as e:
        write(f"⚠ {e}")
