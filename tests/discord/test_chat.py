"""Chat by mention or reply, through the Chat cog with fake messages and channels and the real
assistant on a loopback model server: conversations per reply chain and thread, streaming into
replies, long answers split, pings defused, failures that end clearly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord
import pytest

from bot.discord_app.client import StudyBot
from bot.discord_app.cogs.chat import DMS_OFF, Chat
from bot.discord_app.stream import CURSOR, PLACEHOLDER
from tests.stubs import openai_wire as W

from .conftest import BOT_ID, LLM, interaction, invoke
from .fakes import FakeChannel, FakeGuild, FakeMessage, FakeUser, Log
from .test_commands import NONE, PINGS, RAW_PINGS, assert_no_pings


class Room:
    """One server channel (or a DM) where users talk to the bot."""

    def __init__(self, bot: StudyBot, *, dm: bool = False, kind: discord.ChannelType = discord.ChannelType.text,
                 parent_id: int | None = None) -> None:
        self.bot = bot
        self.log = Log()
        self.guild = None if dm else FakeGuild()
        self.channel = FakeChannel(self.log, kind=discord.ChannelType.private if dm else kind, parent_id=parent_id)
        self.me = FakeUser(BOT_ID, name="studybot", bot=True)

    def say(self, text: str, *, user: FakeUser | None = None, mention: bool = True,
            reply_to: FakeMessage | None = None) -> FakeMessage:
        user = user or FakeUser()
        ref = None
        if reply_to is not None:
            ref = discord.MessageReference(message_id=reply_to.id, channel_id=self.channel.id)
            ref.resolved = reply_to  # type: ignore[assignment]
        content = f"<@{BOT_ID}> {text}" if mention else text
        return FakeMessage(self.log, content=content, channel=self.channel, author=user, guild=self.guild,
                           mentions=[self.me] if mention else [], reference=ref)

    @property
    def bot_messages(self) -> list[FakeMessage]:
        return self.channel.sent


def chat(bot: StudyBot) -> Chat:
    cog = bot.get_cog("Chat")
    assert isinstance(cog, Chat)
    return cog


async def test_a_mention_streams_an_answer_into_a_reply(bot: StudyBot, llm: LLM) -> None:
    room = Room(bot)
    llm.reply("LoRA ", "是一种", "低秩适配方法。")
    out = await chat(bot).handle_message(room.say("什么是 LoRA？"))
    assert out is not None and out.ok
    (answer,) = room.bot_messages
    assert room.log.calls[0].what == "reply" and room.log.calls[0].content == PLACEHOLDER
    assert answer.content == "LoRA 是一种低秩适配方法。"
    assert llm.requests[-1].json()["messages"][-1]["content"] == "什么是 LoRA？"  # the mention is stripped
    for c in room.log.calls:
        assert c.mentions == NONE
        if c.what == "reply":
            assert c.kwargs["mention_author"] is False


async def test_replying_to_the_bot_continues_that_conversation_and_only_that_one(bot: StudyBot, llm: LLM) -> None:
    room = Room(bot)
    alice = FakeUser(name="alice")
    llm.reply("RAG 先检索再生成。")
    await chat(bot).handle_message(room.say("什么是 RAG？", user=alice))
    first_answer = room.bot_messages[-1]
    # another mention in the same channel is another conversation
    llm.reply("量化把权重变成低比特。")
    await chat(bot).handle_message(room.say("什么是量化？"))
    assert [m["role"] for m in llm.requests[-1].json()["messages"]] == ["system", "user"]
    # a reply to the first answer, without a mention, continues the first conversation
    llm.reply("检索的是你的笔记。")
    msg = room.say("检索什么？", user=alice, mention=False, reply_to=first_answer)
    assert await chat(bot).addressed(msg)
    await chat(bot).handle_message(msg)
    sent = llm.requests[-1].json()["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "什么是 RAG？" and sent[2]["content"] == "RAG 先检索再生成。"
    # and the index survives a restart: a new bot finds the chain in the store
    key = await bot.conversations.lookup(first_answer.id)
    fresh = StudyBot(bot.app)
    assert await fresh.conversations.lookup(first_answer.id) == key


async def test_a_thread_is_one_conversation(bot: StudyBot, llm: LLM) -> None:
    parent = Room(bot)
    room = Room(bot, kind=discord.ChannelType.public_thread, parent_id=parent.channel.id)
    room.guild = parent.guild
    await chat(bot).handle_message(room.say("第一句"))
    await chat(bot).handle_message(room.say("第二句", user=FakeUser(name="bob")))
    assert [m["role"] for m in llm.requests[-1].json()["messages"]] == ["system", "user", "assistant", "user"]
    assert await chat(bot).conversation_key(room.say("x")) == f"discord:thread:{room.channel.id}"


async def test_messages_not_for_the_bot_are_ignored(bot: StudyBot, llm: LLM) -> None:
    room = Room(bot)
    assert await chat(bot).handle_message(room.say("随便聊聊", mention=False)) is None
    other_bot = FakeUser(name="otherbot", bot=True)
    assert await chat(bot).handle_message(room.say("hi", user=other_bot)) is None
    assert not llm.requests and not room.log.calls


async def test_a_9000_character_answer_arrives_in_parts_under_2000_with_code_blocks_balanced(
        bot: StudyBot, llm: LLM) -> None:
    pieces = []
    n = 0
    while sum(map(len, pieces)) < 9000:
        pieces.append(f"第 {n} 步：下面是示例代码。\n```python\n" + "\n".join(
            f"def step_{n}_{k}(x):\n    return x * {k}  # 说明 {k}" for k in range(12)) + "\n```\n")
        n += 1
    answer = "".join(pieces)
    assert len(answer) >= 9000
    llm.reply(*[answer[i:i + 50] for i in range(0, len(answer), 50)])
    room = Room(bot)
    out = await chat(bot).handle_message(room.say("给我很多代码"))
    assert out is not None and out.ok
    msgs = [m.content for m in room.bot_messages]
    assert len(msgs) >= 5
    for m in msgs:
        assert 0 < len(m) <= 2000 and m.count("```") % 2 == 0 and not m.endswith(CURSOR)
    joined = "\n".join(msgs)
    assert all(f"def step_{k}_11(x):" in joined for k in range(n))
    # each part replies to the previous one: the chain stays one conversation
    for c in room.log.of("reply", "edit"):
        assert c.mentions == NONE
    keys = {await bot.conversations.lookup(m.id) for m in room.bot_messages}
    assert len(keys) == 1


async def test_an_answer_with_pings_pings_nobody(bot: StudyBot, llm: LLM) -> None:
    llm.reply(PINGS)
    room = Room(bot)
    await chat(bot).handle_message(room.say("喊一下大家"))
    assert_no_pings(room.log)
    final = room.bot_messages[-1].content
    assert "答案是 42" in final and not any(raw in final for raw in RAW_PINGS)


async def test_a_provider_failure_mid_stream_leaves_a_clear_final_message(bot: StudyBot, llm: LLM) -> None:
    llm.push(W.midstream_error(["注意力机制的核心是", "用查询和键计算权重"]))
    room = Room(bot)
    out = await chat(bot).handle_message(room.say("解释注意力"))
    assert out is not None and not out.ok
    final = room.bot_messages[-1].content
    assert final.startswith("注意力机制的核心是用查询和键计算权重")
    assert "⚠️" in final and "中断" in final
    assert PLACEHOLDER not in final and not final.endswith(CURSOR)


async def test_a_provider_down_before_any_text_ends_with_an_error_embed(bot: StudyBot, llm: LLM) -> None:
    await (await bot.app.store()).set_user_model("discord:42", "vllm", None)  # pinned: no fallback
    for _ in range(3):
        llm.push(W.Reply.json({"error": {"message": "down", "code": 503}}, 503))
    room = Room(bot)
    out = await chat(bot).handle_message(room.say("你好", user=FakeUser(42)))
    assert out is not None and not out.ok
    (msg,) = room.bot_messages
    last = room.log.of("edit")[-1]
    assert msg.content == "" and last.embeds and "⚠️" in last.embeds[0].title
    assert "/model" in last.embeds[0].description


async def test_dm_policy_and_channel_allow_list(bot: StudyBot, llm: LLM) -> None:
    dm = Room(bot, dm=True)
    await chat(bot).handle_message(dm.say("私信你", mention=False))
    assert llm.requests  # DMs are on by default, no mention needed
    await (await bot.app.store()).set_value("global", "dm_policy", "off")
    n = len(llm.requests)
    dm2 = Room(bot, dm=True)
    await chat(bot).handle_message(dm2.say("再私信", mention=False))
    assert dm2.log.calls[-1].content == DMS_OFF and len(llm.requests) == n
    room = Room(bot)
    allowed = FakeChannel(room.log)
    await (await bot.app.store()).set_value(f"guild:{room.guild.id}", "allowed_channels",  # type: ignore[union-attr]
                                            f'["{allowed.id}"]')
    assert await chat(bot).handle_message(room.say("这里不让聊")) is None
    assert not room.log.calls and len(llm.requests) == n


async def test_chat_rate_limit(bot: StudyBot, llm: LLM) -> None:
    bot.guard.users.per_minute = 1
    room = Room(bot)
    user = FakeUser()
    await chat(bot).handle_message(room.say("一", user=user))
    n = len(llm.requests)
    await chat(bot).handle_message(room.say("二", user=user))
    assert len(llm.requests) == n and "slow down" in room.log.calls[-1].content


async def test_chat_command_streams_into_the_interaction_and_its_model_override_is_validated(
        bot: StudyBot, llm: LLM) -> None:
    llm.reply("第一段。", "第二段。")
    i = interaction(bot)
    await invoke(bot, "chat", i, message="你好", model="vllm/stub-model")
    assert i.log.kinds[0] == "defer" and i.log.kinds[1] == "edit_original"
    assert i.original.content == "第一段。第二段。"
    bad = interaction(bot)
    await invoke(bot, "chat", bad, message="你好", model="gpt-99")
    assert bad.log.kinds == ["send_message"] and "gpt-99" in bad.log.calls[0].embeds[0].description


@pytest.mark.parametrize("text", ["", "   "])
async def test_an_empty_mention_gets_a_hint(bot: StudyBot, llm: LLM, text: str) -> None:
    room = Room(bot)
    await chat(bot).handle_message(room.say(text))
    assert "Ask me anything" in room.log.calls[-1].content and not llm.requests


async def test_shutdown_lets_an_answer_in_flight_finish(bot: StudyBot, llm: LLM,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import contextlib

    started = asyncio.Event()
    slot = bot.stream_slot

    @contextlib.asynccontextmanager
    async def watched() -> AsyncIterator[None]:
        async with slot():
            started.set()
            yield

    monkeypatch.setattr(bot, "stream_slot", watched)
    llm.push(W.text_stream(["慢", "慢", "说", "完"], chunk_delay=0.2))
    room = Room(bot)
    task = asyncio.create_task(chat(bot).handle_message(room.say("慢慢说")))
    await asyncio.wait_for(started.wait(), 30)  # the answer has started
    await bot.close()
    assert bot.active_streams == 0
    assert room.bot_messages[-1].content == "慢慢说完"  # delivered before the bot closed
    await task


async def test_a_reply_the_bot_cannot_read_asks_for_a_mention(bot: StudyBot, llm: LLM) -> None:
    room = Room(bot)
    await chat(bot).handle_message(room.say("你好"))
    answer = room.bot_messages[-1]
    blind = room.say("", mention=False, reply_to=answer)  # no Message Content intent: the text is empty
    await chat(bot).handle_message(blind)
    assert "Message Content" in room.log.calls[-1].content and len(llm.requests) == 1
