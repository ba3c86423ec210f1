"""Slash commands through the cogs with spec'd fake interactions: defer first, ephemeral flags,
no pings, admin checks, rate limits and budgets, quizzes with persistent buttons, privacy."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.discord_app.client import StudyBot
from bot.discord_app.common import NO_MENTIONS
from bot.discord_app.data import subscription, user_key
from bot.discord_app.views import CompareVoteButton, QuizAnswerButton
from jobs.digest import Digest, save_digest, today_in

from .conftest import LLM, command, interaction, invoke
from .fakes import FAKE_ATTRS, FakeChannel, FakeInteraction, FakeMessage, Log, spec_check

NONE = NO_MENTIONS.to_dict()
PINGS = "大家好 @everyone 和 @here，请 <@&123456789012345678> 与 <@123456789012345678> 注意：答案是 42。"
RAW_PINGS = ("@everyone", "@here", "<@&123456789012345678>", "<@123456789012345678>")


def sent_calls(log: Log) -> list[Any]:
    return [c for c in log.calls if c.what in ("send_message", "followup", "edit_original", "send", "reply", "edit")]


def assert_no_pings(log: Log) -> None:
    for c in sent_calls(log):
        assert c.mentions == NONE, (c.what, c.mentions)
    for text in log.texts():
        for raw in RAW_PINGS:
            assert raw not in text, (raw, text)


async def store_today_digest(bot: StudyBot) -> None:
    day = today_in(bot.app.settings.zone)
    await save_digest(await bot.app.store(), Digest(
        date=day.isoformat(), overview="今日概览 @everyone",
        news=[{"title": f"要闻 {i}", "url": f"http://paper.people.com.cn/rmrb/{i}.htm", "page": "01版",
               "summary": f"第{i}篇文章介绍了有关政策的最新进展与各地的做法，并给出了下一步的工作安排和具体时间表。" * 3}
              for i in range(40)],
        hot_topics=[{"rank": i, "word": f"话题{i}", "heat": 10000 * i, "label": "社会", "sublabel": None}
                    for i in range(1, 31)], built_at=datetime.now().isoformat()))


def small_classifier() -> Any:
    """The real offline classifier with two labels: its prototypes embed in a moment."""
    from jobs.classify import Classifier, parse_labels

    return Classifier(None, labels=parse_labels(
        "labels:\n  - name: 体育\n    description: 体育比赛\n    examples: [国足取胜]\n"
        "  - name: 科技\n    description: 科技产品\n    examples: [新款手机发布]\n"))


class FakeAttachment:
    """discord.Attachment"""

    def __init__(self, filename: str, data: bytes) -> None:
        self.filename = filename
        self.size = len(data)
        self.data = data

    async def save(self, fp: Any, **kw: Any) -> int:
        spec_check(discord.Attachment.save, fp, **kw)
        _write(Path(fp), self.data)
        return self.size


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


# ---- the fakes are faithful ---------------------------------------------------------------------------

def test_fakes_only_expose_what_discord_has() -> None:
    for real, attrs in FAKE_ATTRS.items():
        for a in attrs:
            assert hasattr(real, a) or a in getattr(real, "__slots__", ()) or a in _instance_attrs(real), (real, a)


def _instance_attrs(cls: type) -> set[str]:
    names: set[str] = set()
    for k in cls.__mro__:
        names |= set(getattr(k, "__slots__", ()))
    return names


async def test_a_fake_rejects_what_discord_would_reject(bot: StudyBot) -> None:
    i = interaction(bot)
    with pytest.raises(TypeError):
        await i.response.defer(thinking=True, bogus=1)
    await i.response.defer()
    with pytest.raises(discord.InteractionResponded):
        await i.response.send_message("again")


# ---- defer first ----------------------------------------------------------------------------------------

PROVIDER_COMMANDS: list[tuple[str, dict[str, Any], bool]] = [
    ("ask", {"question": "LoRA 的秩是什么意思？"}, False),
    ("ask", {"question": "什么是 KV cache？", "private": True}, True),
    ("chat", {"message": "你好，介绍一下注意力机制"}, False),
    ("chat", {"message": "私下问一句", "private": True}, True),
    ("compare", {"prompt": "用一句话解释 RAG", "providers": "vllm,offline"}, False),
    ("summarize", {"text": "人工智能大模型正在改变教育。" * 30}, False),
    ("classify", {"text": "国足客场一比零取胜\n新款手机发布"}, False),
    ("digest now", {}, False),
]


@pytest.mark.parametrize(("path", "options", "ephemeral"), PROVIDER_COMMANDS,
                         ids=[f"{p}{'-private' if e else ''}" for p, _, e in PROVIDER_COMMANDS])
async def test_every_command_that_calls_a_provider_defers_first(bot: StudyBot, llm: LLM, path: str,
                                                                options: dict[str, Any], ephemeral: bool) -> None:
    if path == "digest now":
        await store_today_digest(bot)
    if path == "classify":
        bot.classifier = small_classifier()
    i = interaction(bot, admin=True)
    await invoke(bot, path, i, **options)
    assert i.log.calls, "nothing was sent"
    first = i.log.calls[0]
    assert first.what == "defer", i.log.kinds
    assert first.kwargs.get("thinking") is True
    assert bool(first.kwargs.get("ephemeral")) is ephemeral
    later = i.log.kinds[1:]
    assert later and "send_message" not in later and "defer" not in later
    assert set(later) <= {"followup", "edit_original", "edit"}
    assert_no_pings(i.log)
    if path in ("ask", "chat", "compare"):
        assert llm.requests, "the provider was not called"


async def test_kb_add_defers_before_indexing(bot: StudyBot, tmp_path: Path) -> None:
    i = interaction(bot, admin=True)
    note = "# 量化笔记\n\n## GPTQ\n\nGPTQ 是一种逐层的训练后量化方法，用二阶信息补偿误差。\n".encode()
    await invoke(bot, "kb add", i, file=FakeAttachment("../../quant notes.md", note))
    assert i.log.kinds[0] == "defer" and i.log.calls[0].kwargs["ephemeral"] is True
    assert "已加入" in i.log.calls[-1].content
    saved = bot.app.settings.data_path / "guild_kb" / str(i.guild_id) / "quant_notes.md"
    assert saved.read_bytes() == note  # the name is made safe: no path traversal
    assert (bot.app.settings.data_path / "index" / f"guild-{i.guild_id}").is_dir()
    bad = interaction(bot, admin=True)
    await invoke(bot, "kb add", bad, file=FakeAttachment("evil.exe", b"MZ"))
    assert bad.log.kinds == ["send_message"] and bad.log.calls[0].kwargs["ephemeral"] is True


# ---- pings and content --------------------------------------------------------------------------------------

async def test_an_answer_full_of_pings_pings_nobody(bot: StudyBot, llm: LLM) -> None:
    llm.reply(PINGS)
    i = interaction(bot)
    await invoke(bot, "ask", i, question="有人在吗")
    assert_no_pings(i.log)
    shown = " ".join(i.log.texts())
    assert "答案是 42" in shown and "@\u200beveryone" in shown
    llm.reply(PINGS)
    j = interaction(bot)
    await invoke(bot, "chat", j, message="有人在吗")
    assert_no_pings(j.log)
    assert "答案是 42" in " ".join(j.log.texts())


async def test_ask_shows_sources_as_embed_fields(bot: StudyBot, llm: LLM) -> None:
    llm.reply("LoRA 把权重更新分解成两个低秩矩阵。")
    i = interaction(bot)
    await invoke(bot, "ask", i, question="LoRA 的秩 r 和 alpha 有什么关系？")
    (call,) = i.log.of("followup")
    (embed,) = call.embeds
    d = embed.to_dict()
    assert "低秩矩阵" in d["description"]
    assert any("sft_peft.md" in f["value"] for f in d["fields"])
    assert "vllm" in d["footer"]["text"]


async def test_a_long_ask_answer_arrives_in_parts_with_sources_last(bot: StudyBot, llm: LLM) -> None:
    code = "```python\n" + "\n".join(f"y_{k} = softmax(q @ k.T)  # 行 {k}" for k in range(60)) + "\n```"
    llm.reply(*[f"第 {n} 部分：解释注意力。\n{code}\n" for n in range(4)])
    i = interaction(bot)
    await invoke(bot, "ask", i, question="注意力怎么算？")
    parts = i.log.of("followup")
    assert len(parts) >= 4
    assert all(len(c.content) <= 2000 and c.content.count("```") % 2 == 0 for c in parts)
    assert parts[-1].embeds and not any(c.embeds for c in parts[:-1])


async def test_an_unknown_model_is_refused_before_deferring(bot: StudyBot, llm: LLM) -> None:
    i = interaction(bot)
    await invoke(bot, "ask", i, question="hi", model="nosuch/x")
    assert i.log.kinds == ["send_message"] and i.log.calls[0].kwargs["ephemeral"] is True
    assert "nosuch" in i.log.calls[0].embeds[0].description and not llm.requests


# ---- who answers: /model, budget, rate limit ------------------------------------------------------------------

async def test_model_autocomplete_and_choices(bot: StudyBot, llm: LLM) -> None:
    cmd = command(bot, "model")
    i = interaction(bot)
    choices = await cmd._params["name"].autocomplete(i, "vl")  # type: ignore[misc]
    assert [c.value for c in choices][:1] == ["vllm"] and len(choices) <= 25
    await invoke(bot, "model", i, name="offline")
    assert i.log.calls[-1].kwargs["ephemeral"] is True
    row = await (await bot.app.store()).user(user_key(i.user.id))
    assert row is not None and row["provider"] == "offline"
    # the user's own choice answers now: the offline engine, no request to the model server
    j = interaction(bot, user=i.user)
    await invoke(bot, "ask", j, question="什么是注意力机制？")
    assert not llm.requests
    assert "offline" in j.log.of("followup")[-1].embeds[0].to_dict()["footer"]["text"]


async def test_only_admins_set_the_server_model(bot: StudyBot) -> None:
    scope = discord.app_commands.Choice(name="server", value="server")
    i = interaction(bot)
    await invoke(bot, "model", i, name="offline", scope=scope)
    assert "Manage Server" in i.log.calls[-1].embeds[0].description
    a = interaction(bot, admin=True, guild=i.guild)
    await invoke(bot, "model", a, name="vllm/stub-model", scope=scope)
    assert await (await bot.app.store()).get_value(f"guild:{a.guild_id}", "model") == "vllm/stub-model"


async def test_rate_limit_refuses_without_deferring(bot: StudyBot, llm: LLM) -> None:
    bot.guard.users.per_minute = 2
    user = interaction(bot).user
    for _ in range(2):
        ok = interaction(bot, user=user)
        await invoke(bot, "ask", ok, question="什么是 RAG？")
        assert ok.log.kinds[0] == "defer"
    n = len(llm.requests)
    refused = interaction(bot, user=user)
    await invoke(bot, "ask", refused, question="什么是 RAG？")
    assert refused.log.kinds == ["send_message"] and refused.log.calls[0].kwargs["ephemeral"] is True
    assert "slow down" in refused.log.calls[0].embeds[0].description and len(llm.requests) == n
    bot.test_clock.advance(61)  # type: ignore[attr-defined]
    again = interaction(bot, user=user)
    await invoke(bot, "ask", again, question="什么是 RAG？")
    assert again.log.kinds[0] == "defer"


async def test_when_the_daily_budget_is_used_up_the_offline_engine_answers(bot: StudyBot, llm: LLM) -> None:
    bot.guard.budget.daily = 50
    i = interaction(bot)
    await invoke(bot, "ask", i, question="什么是量化？" * 20)
    assert len(llm.requests) == 1
    assert await bot.guard.budget.exhausted(f"guild:{i.guild_id}")
    j = interaction(bot, guild=i.guild)
    await invoke(bot, "ask", j, question="什么是量化？")
    assert len(llm.requests) == 1  # not asked again
    footer = j.log.of("followup")[-1].embeds[0].to_dict()["footer"]["text"]
    assert "offline" in footer and "budget" in footer
    other = interaction(bot)  # another server has its own budget
    await invoke(bot, "ask", other, question="什么是量化？")
    assert len(llm.requests) == 2
    bot.test_clock.advance(86400)  # type: ignore[attr-defined]  # a new day
    assert not await bot.guard.budget.exhausted(f"guild:{i.guild_id}")


async def test_a_channel_outside_the_allow_list_is_refused(bot: StudyBot, llm: LLM) -> None:
    admin = interaction(bot, admin=True)
    await invoke(bot, "config allow", admin, channel=None)
    elsewhere = interaction(bot, guild=admin.guild)
    await invoke(bot, "ask", elsewhere, question="hi")
    assert elsewhere.log.kinds == ["send_message"] and not llm.requests
    here = interaction(bot, guild=admin.guild, channel=admin.channel)
    await invoke(bot, "ask", here, question="hi")
    assert here.log.kinds[0] == "defer" and llm.requests


# ---- admin commands ---------------------------------------------------------------------------------------------

async def test_digest_commands_are_for_admins(bot: StudyBot) -> None:
    store = await bot.app.store()
    user = interaction(bot)
    await invoke(bot, "digest subscribe", user)
    assert "Manage Server" in user.log.calls[-1].embeds[0].description
    assert await subscription(store, user.guild_id) is None  # type: ignore[arg-type]
    admin = interaction(bot, admin=True)
    await invoke(bot, "digest subscribe", admin, time="07:30")
    sub = await subscription(store, admin.guild_id)  # type: ignore[arg-type]
    assert sub is not None and sub["channel_id"] == str(admin.channel_id) and sub["time"] == "07:30"
    bad = interaction(bot, admin=True, guild=admin.guild)
    await invoke(bot, "digest time", bad, time="25:99")
    assert "HH:MM" in bad.log.calls[-1].embeds[0].description
    t = interaction(bot, admin=True, guild=admin.guild)
    await invoke(bot, "digest time", t, time="21:00")
    off = interaction(bot, admin=True, guild=admin.guild)
    await invoke(bot, "digest unsubscribe", off)
    sub = await subscription(store, admin.guild_id)  # type: ignore[arg-type]
    assert sub is not None and sub["time"] == "21:00" and sub["enabled"] == 0
    from jobs.scheduler import load_subscriptions

    subs = await load_subscriptions(store, bot.app.settings)
    assert any(s.channel_id == str(admin.channel_id) and not s.enabled for s in subs)
    # the admin commands also carry Discord's default permission, so members do not even see them
    assert command(bot, "digest").default_permissions.manage_guild


async def test_digest_now_posts_embeds_within_limits(bot: StudyBot) -> None:
    await store_today_digest(bot)
    i = interaction(bot, admin=True)
    await invoke(bot, "digest now", i)
    posts = i.log.of("followup")
    assert len(posts) >= 2  # 40 articles and 30 topics do not fit one message
    for p in posts:
        assert 1 <= len(p.embeds) <= 10
        assert sum(len(e) for e in p.embeds) <= 6000
    text = " ".join(i.log.texts())
    assert "要闻 39" in text and "话题30" in text and "@everyone" not in text


async def test_the_scheduler_posts_through_the_bot(bot: StudyBot, monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log()
    channel = FakeChannel(log)
    monkeypatch.setattr(bot, "get_channel", lambda cid: channel if cid == channel.id else None)
    await bot.post_digest(str(channel.id), Digest(date="2026-01-02", overview="概览", news=[
        {"title": "t", "url": "http://paper.people.com.cn/a.htm", "page": "01版", "summary": "s"}]))
    assert log.kinds == ["send"] and log.calls[0].mentions == NONE and len(log.calls[0].embeds) == 2


async def test_persona_and_dm_policy(bot: StudyBot) -> None:
    a = interaction(bot, admin=True)
    await invoke(bot, "config persona", a, text="用简单的话回答初学者 @everyone")
    assert await (await bot.app.store()).get_value(f"channel:{a.channel_id}", "persona")
    assert_no_pings(a.log)
    stranger = interaction(bot)
    bot.owner_id = 1  # someone else (known from the application info at login)
    await invoke(bot, "config dms", stranger, enabled=False)
    assert "owner" in stranger.log.calls[-1].embeds[0].description
    bot.owner_id = stranger.user.id
    await invoke(bot, "config dms", interaction(bot, user=stranger.user), enabled=False)
    assert await (await bot.app.store()).get_value("global", "dm_policy") == "off"


async def test_help_and_stats(bot: StudyBot, llm: LLM) -> None:
    h = interaction(bot)
    await invoke(bot, "help", h)
    assert h.log.kinds == ["send_message"] and h.log.calls[0].kwargs["ephemeral"] is True
    await invoke(bot, "ask", interaction(bot), question="什么是 RLHF？")
    await bot.app._recorder.flush() if hasattr(bot.app._recorder, "flush") else None  # type: ignore[union-attr]
    s = interaction(bot)
    await invoke(bot, "stats", s)
    assert s.log.kinds[0] == "defer"
    assert "调用统计" in s.log.calls[-1].embeds[0].title


# ---- quizzes with persistent buttons -------------------------------------------------------------------------------

def _buttons(view: discord.ui.View) -> list[Any]:
    return list(view.children)


async def _click(bot: StudyBot, button: Any, user: Any, message: FakeMessage) -> FakeInteraction:
    """A component interaction on `button` (rebuilt from its custom_id, as after a restart)."""
    i = FakeInteraction(bot, message.log, user=user, message=message)
    cls = type(button)
    match = cls.__discord_ui_compiled_template__.fullmatch(button.custom_id)
    assert match is not None
    item = await cls.from_custom_id(i, button.item, match)
    await item.callback(i)
    return i


async def test_a_quiz_runs_on_buttons_that_survive_a_restart(bot: StudyBot) -> None:
    start = interaction(bot)
    await invoke(bot, "quiz start", start, topic="rag", count=2)
    assert start.log.kinds[0] == "defer"
    post = start.log.of("followup")[-1]
    buttons = _buttons(post.kwargs["view"])
    assert len(buttons) == 4 and all(isinstance(b, QuizAnswerButton) for b in buttons)
    assert all(len(b.custom_id) <= 100 for b in buttons)
    assert "第 1/2 题" in post.embeds[0].title
    msg = FakeMessage(start.log, channel=start.channel)
    # a bystander answers: private feedback, the quiz does not move on
    other = await _click(bot, buttons[0], interaction(bot).user, msg)
    assert other.log.kinds[-2:] == ["defer", "followup"] and other.log.calls[-1].kwargs["ephemeral"] is True
    # the starter answers: feedback, then the message shows question 2
    n = len(start.log.calls)
    await _click(bot, buttons[1], start.user, msg)
    kinds = start.log.kinds[n:]
    assert kinds == ["defer", "followup", "edit_original"], kinds
    nxt = start.log.calls[-1]
    assert "第 2/2 题" in nxt.embeds[0].title
    # answering again on the old question is refused, nothing moves
    n = len(start.log.calls)
    await _click(bot, buttons[2], start.user, msg)
    assert "已经" in start.log.calls[-1].content and start.log.kinds[n:] == ["defer", "followup"]
    # last question: the summary replaces the buttons
    await _click(bot, _buttons(nxt.kwargs["view"])[0], start.user, msg)
    end = start.log.calls[-1]
    assert end.what == "edit_original" and end.kwargs["view"] is None and "测验结束" in end.embeds[0].title
    stats = interaction(bot, user=start.user)
    await invoke(bot, "quiz stats", stats)
    assert stats.log.calls[0].kwargs["ephemeral"] is True
    board = interaction(bot, guild=start.guild)
    await invoke(bot, "quiz leaderboard", board)
    assert f"<@{start.user.id}>" in board.log.calls[-1].embeds[0].description
    assert_no_pings(board.log)


async def test_review_with_nothing_due_says_so(bot: StudyBot) -> None:
    i = interaction(bot)
    await invoke(bot, "quiz review", i)
    assert "没有需要复习" in i.log.calls[-1].content


async def test_an_unknown_topic_is_a_clear_error(bot: StudyBot) -> None:
    i = interaction(bot)
    await invoke(bot, "quiz start", i, topic="astrology")
    assert "unknown topic" in i.log.calls[-1].embeds[0].description


async def test_compare_shows_one_embed_per_provider_with_votes(bot: StudyBot, llm: LLM) -> None:
    llm.reply("检索增强生成：先检索再生成。", usage=(30, 12))
    i = interaction(bot)
    await invoke(bot, "compare", i, prompt="用一句话解释 RAG", providers="vllm,offline")
    final = i.log.calls[-1]
    assert final.what == "edit_original"
    assert [e.title.split("]")[0] for e in final.embeds] == ["[1", "[2"]
    assert sum(len(e) for e in final.embeds) <= 6000
    fields = {f.name: f.value for f in final.embeds[0].fields}
    assert "总计 / total" in fields and fields["tokens 入/出 in/out"] == "30 / 12"
    votes = _buttons(final.kwargs["view"])
    assert len(votes) == 2 and all(isinstance(b, CompareVoteButton) for b in votes)
    v = await _click(bot, votes[0], i.user, FakeMessage(i.log))
    assert "已投票" in v.log.calls[-1].content and v.log.calls[-1].kwargs["ephemeral"] is True


# ---- privacy -------------------------------------------------------------------------------------------------------------

async def test_export_and_forget(bot: StudyBot, llm: LLM) -> None:
    user = interaction(bot).user
    await invoke(bot, "chat", interaction(bot, user=user), message="记住：我喜欢 RAG")
    await invoke(bot, "quiz start", interaction(bot, user=user), topic="rag", count=1)
    exp = interaction(bot, user=user)
    await invoke(bot, "export", exp)
    assert exp.log.kinds[0] == "defer" and exp.log.calls[0].kwargs["ephemeral"] is True
    f: discord.File = exp.log.calls[-1].kwargs["file"]
    data = json.loads(f.fp.read())
    assert data["user_id"] == user_key(user.id)
    assert any("我喜欢 RAG" in m["content"] for c in data["conversations"] for m in c["messages"])
    assert data["quiz_sessions"]
    forget = interaction(bot, user=user)
    counts = await bot.get_cog("Privacy").do_forget(forget)  # type: ignore[union-attr]
    assert counts.get("conversations") and counts.get("quiz_sessions")
    again = interaction(bot, user=user)
    await invoke(bot, "export", again)
    data = json.loads(again.log.calls[-1].kwargs["file"].fp.read())
    assert not data["conversations"] and not data["quiz_sessions"] and not data["messages_elsewhere"]


async def test_forget_asks_for_confirmation(bot: StudyBot) -> None:
    i = interaction(bot)
    task = None
    import asyncio

    task = asyncio.create_task(invoke(bot, "forget", i))
    for _ in range(50):
        await asyncio.sleep(0)
        if i.log.calls:
            break
    first = i.log.calls[0]
    assert first.what == "send_message" and first.kwargs["ephemeral"] is True
    view = first.kwargs["view"]
    cancel = FakeInteraction(bot, i.log, user=i.user)
    await view.cancel.callback(cancel)
    await task
    assert i.log.kinds[-1] == "edit_message" and view.value is False


EVERY_COMMAND: list[tuple[str, dict[str, Any]]] = [
    ("model", {}), ("model", {"name": "vllm"}), ("quiz start", {}), ("quiz review", {}), ("quiz stats", {}),
    ("quiz leaderboard", {}), ("stats", {}), ("help", {}), ("export", {}), ("digest subscribe", {}),
    ("digest time", {"time": "09:00"}), ("digest unsubscribe", {}), ("config persona", {"text": "耐心"}),
    ("config allow", {}), ("config deny", {}), ("config channels", {}), ("config dms", {"enabled": True}),
    ("summarize", {}), ("roadmap", {}), ("roadmap", {"step": "2"}), ("plan", {}), ("progress", {}),
    ("progress", {"server": True}),
]


@pytest.mark.parametrize(("path", "options"), EVERY_COMMAND, ids=[f"{p}-{i}" for i, (p, _) in enumerate(EVERY_COMMAND)])
async def test_every_command_acknowledges_first(bot: StudyBot, path: str, options: dict[str, Any]) -> None:
    """Whatever a command does, its first act is the acknowledgement: a defer, or a direct reply."""
    i = interaction(bot, admin=True)
    bot.owner_id = i.user.id
    await invoke(bot, path, i, **options)
    assert i.log.kinds and i.log.kinds[0] in ("defer", "send_message"), i.log.kinds
    assert i.log.kinds.count("defer") + i.log.kinds.count("send_message") == 1
    assert_no_pings(i.log)
