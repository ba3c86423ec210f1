"""Buttons that survive a restart (DynamicItem: the state is in the custom_id) and small views.

- Quiz answers: `quiz:<session>:<question>:<choice>` (bot.quiz.session.ANSWER_ID_RE). A click
  answers for the clicker (exactly once, enforced by the store), shows them private feedback,
  and when the quiz's starter answers, the message moves to the next question or the summary.
- Review nudges: `quiz:review:<user>` starts a review of that user's due cards (only theirs).
- Compare votes: `cmp:<run>:<position>` records a vote for one panel (changeable).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.quiz.session import ANSWER_ID_RE, REVIEW_ID_RE, QuizError, answer_custom_id, review_custom_id

from ..render import COLOR_INFO, COLOR_OK, EmbedSpec, clip, fit_embed, scrub
from .common import NO_MENTIONS, bot_of, respond, show_error, to_embed
from .data import user_key

if TYPE_CHECKING:
    from bot.quiz.session import Feedback, QuestionView, Summary

log = logging.getLogger(__name__)

LETTERS = "ABCD"
VOTE_ID_RE = re.compile(r"^cmp:(?P<run>\d{1,12}):(?P<pos>\d)$")


def vote_custom_id(run_id: int, position: int) -> str:
    return f"cmp:{run_id}:{position}"


# ---- quiz messages ------------------------------------------------------------------------------

def question_embed(q: QuestionView) -> EmbedSpec:
    qu = q.question
    lines = [f"**{scrub(qu.question)}**", ""] + [f"{LETTERS[i]}. {scrub(o)}" for i, o in enumerate(qu.options)]
    mode = "复习 / review" if q.mode == "review" else qu.topic
    return fit_embed(EmbedSpec(
        title=f"📝 第 {q.index + 1}/{q.total} 题 / Question {q.index + 1} of {q.total} · {mode}",
        description="\n".join(lines), color=COLOR_INFO,
        footer=f"难度 / difficulty: {qu.difficulty} · 限时 / time limit {q.time_limit_s:.0f} s（越快分越高 / faster "
               "scores more）"))


def question_view(q: QuestionView) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for i, opt in enumerate(q.question.options):
        view.add_item(QuizAnswerButton(q.session_id, q.question.id, i, label=clip(f"{LETTERS[i]}. {opt}", 80)))
    return view


def feedback_text(fb: Feedback) -> str:
    if not fb.accepted:
        return {"duplicate": "你已经答过这道题了 / you already answered this question",
                "closed": "这道题已经结束 / this question is closed",
                "finished": "这次测验已经结束 / this quiz is over",
                "not_started": "测验还没开始 / the quiz has not started"}.get(fb.reason, fb.reason)
    head = (f"✅ 正确！+{fb.points} 分 / correct, +{fb.points} points" if fb.correct else
            f"❌ 答错了 / wrong — 正确答案 / answer: {LETTERS[fb.answer]}. {scrub(fb.answer_text)}")
    lines = [head]
    if fb.explanation:
        lines.append(scrub(fb.explanation))
    if fb.ref.get("path"):
        lines.append(f"-# 📖 {fb.ref['path']} › {fb.ref.get('heading', '')}")
    if fb.streak:
        lines.append(f"-# 🔥 连续学习 {fb.streak} 天 / {fb.streak}-day streak")
    return "\n".join(lines)


def summary_embed(s: Summary) -> EmbedSpec:
    spec = EmbedSpec(title="🏁 测验结束 / Quiz finished", color=COLOR_OK,
                     description=f"答对 {s.correct}/{s.total} · {s.points} 分 / {s.correct} of {s.total} correct, "
                                 f"{s.points} points")
    if len(s.users) > 1:
        spec.add("排名 / ranking", "\n".join(f"{i}. <@{u.user_id.removeprefix('discord:')}> {u.points} 分 "
                                             f"({u.correct}/{u.answered})" for i, u in enumerate(s.users[:10], 1)))
    if s.missed:
        spec.add("错题将安排复习 / missed questions go to review", f"{len(s.missed)} 题 · /quiz review")
    if s.due_now:
        spec.add("待复习 / due now", str(s.due_now), inline=True)
    if s.streak:
        spec.add("连续天数 / streak", str(s.streak), inline=True)
    return fit_embed(spec)


async def handle_answer(interaction: discord.Interaction, session_id: str, question_id: str, choice: int) -> None:
    # a deferred update: no "thinking" message, the feedback is a private followup
    await interaction.response.defer()
    bot = bot_of(interaction)
    uid = user_key(interaction.user.id)
    try:
        svc = await bot.quiz_service()
        session = await svc.resume(session_id)
        if session is None:
            await show_error(interaction, "这个测验已不存在 / this quiz no longer exists", "用 /quiz start 开始新的 / "
                                                                                   "start a new one with /quiz start")
            return
        fb = await session.answer(uid, choice, question_id=question_id)
        await respond(interaction, feedback_text(fb), ephemeral=True)
        info = await session.info()
        if not (fb.accepted and info["user_id"] == uid):
            return  # only the starter's answer moves the quiz on; others just play along
        nxt = await session.next_question()
        if nxt is not None:
            await interaction.edit_original_response(embed=to_embed(question_embed(nxt)), view=question_view(nxt),
                                                     allowed_mentions=NO_MENTIONS)
        else:
            summary = await session.finish(uid)
            await interaction.edit_original_response(embed=to_embed(summary_embed(summary)), view=None,
                                                     allowed_mentions=NO_MENTIONS)
    except QuizError as e:
        await show_error(interaction, str(e))


async def start_review(interaction: discord.Interaction, *, count: int = 10) -> None:
    """Start a review session of the user's due cards and post its first question."""
    bot = bot_of(interaction)
    svc = await bot.quiz_service()
    session = await svc.start_review(user_key(interaction.user.id), count,
                                     guild=str(interaction.guild_id) if interaction.guild_id else None,
                                     channel=str(interaction.channel_id) if interaction.channel_id else None)
    if session is None:
        await respond(interaction, "🎉 现在没有需要复习的题 / nothing is due for review right now", ephemeral=True)
        return
    q = await session.next_question()
    assert q is not None
    await respond(interaction, embed=question_embed(q), view=question_view(q))


# ---- dynamic items ---------------------------------------------------------------------------------------

class QuizAnswerButton(discord.ui.DynamicItem[discord.ui.Button], template=ANSWER_ID_RE):  # type: ignore[misc]
    def __init__(self, session_id: str, question_id: str, choice: int, *, label: str | None = None) -> None:
        super().__init__(discord.ui.Button(label=label or LETTERS[choice], style=discord.ButtonStyle.secondary,
                                           custom_id=answer_custom_id(session_id, question_id, choice)))
        self.session_id = session_id
        self.question_id = question_id
        self.choice = choice

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> QuizAnswerButton:
        return cls(match["session"], match["question"], int(match["choice"]), label=getattr(item, "label", None))

    async def callback(self, interaction: discord.Interaction) -> None:
        await handle_answer(interaction, self.session_id, self.question_id, self.choice)


class QuizReviewButton(discord.ui.DynamicItem[discord.ui.Button], template=REVIEW_ID_RE):  # type: ignore[misc]
    def __init__(self, user: str) -> None:
        super().__init__(discord.ui.Button(label="开始复习 / Review now", style=discord.ButtonStyle.primary,
                                           emoji="🔁", custom_id=review_custom_id(user)))
        self.user = user

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> QuizReviewButton:
        return cls(match["user"])

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if user_key(interaction.user.id) == self.user:
            return True
        await show_error(interaction, "这是别人的复习提醒 / this reminder is for someone else",
                         "用 /quiz review 复习你自己的题 / use /quiz review for your own")
        return False

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await start_review(interaction)


class CompareVoteButton(discord.ui.DynamicItem[discord.ui.Button], template=VOTE_ID_RE):  # type: ignore[misc]
    def __init__(self, run_id: int, position: int, *, label: str | None = None) -> None:
        super().__init__(discord.ui.Button(label=label or f"👍 {position + 1}", style=discord.ButtonStyle.secondary,
                                           custom_id=vote_custom_id(run_id, position)))
        self.run_id = run_id
        self.position = position

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> CompareVoteButton:
        return cls(int(match["run"]), int(match["pos"]), label=getattr(item, "label", None))

    async def callback(self, interaction: discord.Interaction) -> None:
        from bot.compare import CompareError, CompareStore

        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            res = await CompareStore(await bot_of(interaction).app.store()).vote(
                self.run_id, user_key(interaction.user.id), self.position)
        except CompareError as e:
            await show_error(interaction, str(e))
            return
        verb = "已改票 / vote changed" if res.changed else "已投票 / voted"
        tally = " · ".join(f"[{i + 1}] {n}" for i, n in enumerate(res.tally))
        await respond(interaction, f"{verb}: #{res.run_id} → [{res.position + 1}]\n-# 票数 / tally: {tally}",
                      ephemeral=True)


def vote_view(run_id: int, labels: list[str], failed: set[int]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for i, label in enumerate(labels[:25]):
        btn = CompareVoteButton(run_id, i, label=clip(f"👍 {i + 1}. {label}", 80))
        btn.item.disabled = i in failed
        view.add_item(btn)
    return view


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (QuizAnswerButton, QuizReviewButton, CompareVoteButton)


# ---- a confirmation (not persistent: it expires) -------------------------------------------------------

class ConfirmView(discord.ui.View):
    """Two buttons for one user; the result lands on `self.value` (True, False, None on timeout)."""

    def __init__(self, user_id: int, *, timeout: float = 60.0) -> None:
        super().__init__(timeout=timeout)
        self.user_id = user_id
        self.value: bool | None = None

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return interaction.user.id == self.user_id

    @discord.ui.button(label="确认删除 / Delete", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.value = True
        await interaction.response.edit_message(content="处理中… / working…", view=None)
        self.stop()

    @discord.ui.button(label="取消 / Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.value = False
        await interaction.response.edit_message(content="已取消 / cancelled", view=None)
        self.stop()

