"""`/quiz start|review|stats|leaderboard`: quizzes with buttons and spaced repetition
(the engine is `bot.quiz`; the buttons are persistent DynamicItems in views.py)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.quiz.bank import TOPICS
from bot.quiz.session import MAX_COUNT, QuizError

from ...render import COLOR_INFO, EmbedSpec, fit_embed
from ..common import defer, respond, show_error
from ..data import user_key
from ..views import question_embed, question_view, start_review

if TYPE_CHECKING:
    from ..client import StudyBot

log = logging.getLogger(__name__)


async def topic_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    cur = (current or "").strip().lower()
    return [app_commands.Choice(name=t, value=t) for t in ("all", *TOPICS) if cur in t][:25]


def _mention(uid: str) -> str:
    return f"<@{uid.removeprefix('discord:')}>" if uid.startswith("discord:") else uid


class QuizCog(commands.Cog, name="Quiz"):
    quiz = app_commands.Group(name="quiz", description="测验与间隔重复 / quizzes with spaced repetition")

    def __init__(self, bot: StudyBot) -> None:
        self.bot = bot

    @quiz.command(name="start", description="开始一次测验 / start a quiz")
    @app_commands.describe(topic="主题（默认全部）/ topic (default: all)", count="题数 / number of questions")
    @app_commands.autocomplete(topic=topic_autocomplete)
    async def start(self, interaction: discord.Interaction, topic: str | None = None,
                    count: app_commands.Range[int, 1, MAX_COUNT] = 5) -> None:
        await defer(interaction)
        try:
            svc = await self.bot.quiz_service()
            session = await svc.start(user_key(interaction.user.id), topic, count,
                                      guild=str(interaction.guild_id) if interaction.guild_id else None,
                                      channel=str(interaction.channel_id) if interaction.channel_id else None)
            q = await session.next_question()
        except QuizError as e:
            await show_error(interaction, str(e))
            return
        assert q is not None
        await respond(interaction, embed=question_embed(q), view=question_view(q))

    @quiz.command(name="review", description="复习到期的错题 / review the questions that are due")
    async def review(self, interaction: discord.Interaction) -> None:
        await defer(interaction)
        try:
            await start_review(interaction)
        except QuizError as e:
            await show_error(interaction, str(e))

    @quiz.command(name="stats", description="你的测验统计 / your quiz statistics")
    async def stats(self, interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        st = await (await self.bot.quiz_service()).stats(user_key(interaction.user.id))
        spec = EmbedSpec(title="📊 测验统计 / Quiz stats", color=COLOR_INFO)
        spec.add("得分 / points", str(st.points), True).add("正确率 / accuracy", f"{st.accuracy:.0%}", True)
        spec.add("答题 / answered", f"{st.correct}/{st.answered}", True)
        spec.add("连续天数 / streak", f"{st.streak}（最长 best {st.best_streak}）", True)
        spec.add("复习卡片 / cards", f"{st.cards}，待复习 due {st.due_now}", True)
        if st.next_due:
            spec.add("下次复习 / next review", f"<t:{int(st.next_due.timestamp())}:R>", True)
        weak = sorted(((c / n, t) for t, (c, n) in st.topics.items() if n), key=lambda x: x[0])[:5]
        if weak:
            spec.add("需加强 / to work on", "\n".join(f"{t}: {acc:.0%}" for acc, t in weak))
        await respond(interaction, embed=fit_embed(spec), ephemeral=True)

    @quiz.command(name="leaderboard", description="本服务器排行榜 / this server's leaderboard")
    async def leaderboard(self, interaction: discord.Interaction) -> None:
        await defer(interaction)
        rows = await (await self.bot.quiz_service()).leaderboard(
            str(interaction.guild_id) if interaction.guild_id else None, 10)
        lines = [f"{r.get('rank', i)}. {_mention(str(r['user_id']))} — {r['points']} 分 / pts "
                 f"({r.get('correct', 0)}/{r.get('answered', 0)})" for i, r in enumerate(rows, 1)]
        spec = EmbedSpec(title="🏆 排行榜 / Leaderboard", color=COLOR_INFO,
                         description="\n".join(lines) or "还没有人答题 / nobody has played yet")
        await respond(interaction, embed=fit_embed(spec))  # embeds never ping: the <@id> are names only


async def setup(bot: StudyBot) -> None:
    await bot.add_cog(QuizCog(bot))
