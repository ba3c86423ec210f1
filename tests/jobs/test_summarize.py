"""Offline extractive summaries, the day overview, and LLM summaries against a loopback stub.

Articles here are written for these tests (People's Daily layout: byline line, dateline,
body paragraphs, editor line), not copied from anywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobs.summarize import (
    overview,
    summarize,
    summarize_llm,
    summarize_llm_detail,
    summarize_rows,
    summarize_sentences,
    validate_summary,
)
from jobs.text import clauses, is_boilerplate, split_sentences, strip_punct
from tests.stubs.http_server import Reply, Request, StubServer
from tests.stubs.openai_wire import completion
from tests.stubs.router import stub_router

ADVERSARIAL = Path(__file__).resolve().parents[1] / "data" / "adversarial.jsonl"

ARTICLE = """本报记者 林晓 周明
本报杭州3月12日电（记者林晓、周明）——清晨的钱塘江边，薄雾还没有散去，跑步的人已经三三两两。
浙江省交通运输厅11日发布消息，杭州至宁波城际铁路一期工程正式开通运营，线路全长128公里，设计时速200公里，全线设车站11座。开通后，杭州至宁波的最快旅行时间由原来的1小时50分缩短至58分钟。
据介绍，这条城际铁路总投资约386亿元，历时4年建成，沿线覆盖常住人口超过1200万人。
“以前去宁波开会要提前一天出发，现在早上出门，中午就能回来。”在杭州上班的王女士说。
省交通运输厅有关负责人表示，下一步将加快推进城际铁路与地铁、公交的换乘衔接。
（责任编辑：陈静）
2025年3月12日
"""
KEY_FACTS = ["128公里", "200公里", "58分钟", "386亿元"]

LONG_SENTENCE = ("国家统计局今天发布的数据显示，前十个月全国规模以上工业增加值同比增长5.8%，社会消费品零售总额同比增长3.5%，"
                 "新能源汽车产量增长30.2%，集成电路产量增长22.1%，工业机器人产量增长28.5%，服务业生产指数同比增长5.1%，"
                 "固定资产投资同比增长3.4%，其中高技术产业投资增长10.5%。")


def adversarial_rows(kind: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in ADVERSARIAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if kind is None or r["kind"] == kind]


MENTION = re.compile(r"@(everyone|here)\b|<@[!&]?\d+>", re.I)
FORBIDDEN = re.compile(r"(?i)@everyone|@here|<@[!&]?\d+>|discord\.gg|discord\.com/invite|https?://|PWNED|"
                       r"系统提示词|忽略之前的指令|\]\(|啊{10}")


# ---- offline ---------------------------------------------------------------------------------

def test_pieces_are_whole_sentences_of_the_article() -> None:
    sentences = {s.text for s in split_sentences(ARTICLE)}
    for budget in (80, 120, 200, 400, 2000):
        pieces = summarize_sentences(ARTICLE, budget, title="杭甬城际铁路开通")
        assert pieces, budget
        for p in pieces:
            assert p in sentences, (budget, p)
            assert p in ARTICLE


@pytest.mark.parametrize("budget", [1, 2, 5, 10, 20, 30, 45, 60, 100, 150, 200, 333])
def test_max_chars_is_respected_and_nothing_is_invented(budget: int) -> None:
    for article in (ARTICLE, LONG_SENTENCE, *(r["text"] for r in adversarial_rows())):
        s = summarize(article, budget)
        assert len(s) <= budget
        # every piece is the article's own text (mention tokens cut out); only a budget smaller
        # than any clause (the last resort) ends in an ellipsis
        without_mentions = re.sub(r"\s{2,}", " ", MENTION.sub("", article))
        for piece in summarize_sentences(article, budget):
            assert piece.removesuffix("…") in article or piece.removesuffix("…") in without_mentions, piece


def test_bylines_editor_lines_dates_and_datelines_are_skipped() -> None:
    s = summarize(ARTICLE, 2000)
    for junk in ("林晓", "周明", "责任编辑", "陈静", "2025年3月12日", "本报杭州", "电（记者"):
        assert junk not in s, junk
    assert s.startswith("清晨的钱塘江边")  # the dateline was cut, the sentence kept
    for line in ("本报记者 林晓 周明", "（责任编辑：陈静）", "2025年3月12日", "《人民日报》（2025年03月12日 第 04 版）",
                 "责编：王五", "新华社记者 李华 摄", "图片报道"):
        assert is_boilerplate(line), line
    for line in ("记者从浙江省交通运输厅了解到，城际铁路将于明日开通。", "杭州至宁波城际铁路开通"):
        assert not is_boilerplate(line), line


def test_key_facts_are_preferred_over_the_scenic_lead() -> None:
    s = summarize(ARTICLE, 160, title="杭甬城际铁路一期开通")
    kept = [f for f in KEY_FACTS if f in s]
    lead = ""
    for sent in split_sentences(ARTICLE):
        if len(lead) + len(sent.text) > 160:
            break
        lead += sent.text
    assert len(kept) >= 3, s
    assert len(kept) > sum(f in lead for f in KEY_FACTS)
    assert "薄雾" not in s  # the scenery gives way to the facts


def test_a_sentence_longer_than_the_budget_gives_whole_clauses() -> None:
    s = summarize(LONG_SENTENCE, 60)
    assert 0 < len(s) <= 60
    assert s in LONG_SENTENCE
    # it ends where a clause ends: the next character of the article is a clause mark
    end = LONG_SENTENCE.index(s) + len(s)
    assert LONG_SENTENCE[end] in "，；：、。"
    starts = {LONG_SENTENCE[a:b] for a, b in clauses(LONG_SENTENCE)}
    assert any(s.startswith(c.rstrip("，；：、")) for c in starts)


def test_quotes_keep_their_attribution_and_are_not_split_inside() -> None:
    text = "他说：“我们今年完成了三件事。第一件是修路。第二件是建校。”记者了解到，工程已全部完工。"
    sents = [s.text for s in split_sentences(text)]
    assert sents == ["他说：“我们今年完成了三件事。第一件是修路。第二件是建校。”", "记者了解到，工程已全部完工。"]
    text2 = "“住院花了两万多元，出院时直接结算。”她说。医保局表示将继续扩大范围。"
    assert split_sentences(text2)[0].text == "“住院花了两万多元，出院时直接结算。”她说。"


def test_odd_inputs() -> None:
    assert summarize("", 100) == ""
    assert summarize("   \n\n", 100) == ""
    assert summarize("啊" * 10_000, 100) == ""  # a flood is not news
    assert len(summarize("这是一个没有标点的很长的句子" * 50, 40)) <= 40
    assert summarize("短讯。", 100) == "短讯。"


def test_adversarial_articles_give_clean_summaries() -> None:
    for row in adversarial_rows():
        s = summarize(row["text"], 200, title=row["title"])
        assert not FORBIDDEN.search(s), (row["title"], s)
        assert len(s) <= 200
    first = adversarial_rows("article")[0]
    s = summarize(first["text"], 200)
    assert "24.6公里" in s and "全部配置" not in s  # the line after the injection went with it


def test_overview_is_bounded_and_made_of_article_sentences() -> None:
    arts = [
        {"title": "杭甬城际铁路一期开通", "body": ARTICLE, "page": "01版：要闻"},
        {"title": "前十个月工业生产平稳", "body": LONG_SENTENCE, "page": "02版：要闻"},
        {"title": "春耕备耕有序推进", "page": "10版：农业",
         "body": "农业农村部最新调度显示，全国已春播粮食1.2亿亩，进度同比快1.5个百分点。各地抢抓农时开展春耕。"},
        {"title": "点击领取补贴", "page": "13版：广告", "body": "请访问 https://discord.gg/x 领取 @everyone"},
    ]
    ov = overview(arts, 300)
    assert 0 < len(ov) <= 300
    assert not FORBIDDEN.search(ov)
    assert "杭州至宁波城际铁路一期工程正式开通运营" in ov
    assert overview([], 300) == ""
    assert len(overview(arts, 40)) <= 40


async def test_summarize_rows_offline_keeps_order_and_fields() -> None:
    rows = [{"id": 1, "article": ARTICLE, "title": "杭甬城际铁路开通"}, {"id": 2, "body": LONG_SENTENCE},
            {"id": 3, "text": "短讯。"}, "一行纯文本也可以。第二句。", {"id": 5}]
    out = await summarize_rows(rows, "offline", 100)
    assert [r.get("id") for r in out] == [1, 2, 3, None, 5]
    assert all(len(r["summary"]) <= 100 for r in out)
    assert out[0]["summary"] and out[0]["title"] == "杭甬城际铁路开通"
    assert out[3]["summary"].startswith("一行纯文本也可以。")
    assert out[4]["summary"] == ""
    with pytest.raises(ValueError):
        await summarize_rows(rows, "offline", 0)


# ---- the validator -----------------------------------------------------------------------------

def test_validator_accepts_a_grounded_summary_and_rejects_the_rest() -> None:
    good = "杭州至宁波城际铁路一期工程开通运营，全长128公里，杭州至宁波最快58分钟，总投资约386亿元。"
    assert validate_summary(good, ARTICLE, 200) == good
    assert validate_summary("摘要：" + good, ARTICLE, 200) == good
    assert validate_summary("PWNED", ARTICLE, 200) is None
    assert validate_summary("无法摘要", ARTICLE, 200) is None
    assert validate_summary("", ARTICLE, 200) is None
    assert validate_summary(good + "@everyone", ARTICLE, 200) is None
    assert validate_summary(good + "详见 discord.gg/abc", ARTICLE, 200) is None
    # an invented number, or text from elsewhere
    assert validate_summary("杭州至宁波城际铁路全长150公里。", ARTICLE, 200) is None
    assert validate_summary("量子计算机在实验室中实现了超导比特的纠错突破。", ARTICLE, 200) is None
    # too long: cut back to whole sentences of the output
    two = "杭州至宁波城际铁路一期工程开通运营。线路全长128公里，设计时速200公里，全线设车站11座。"
    assert validate_summary(two, ARTICLE, 20) == "杭州至宁波城际铁路一期工程开通运营。"
    assert validate_summary(two, ARTICLE, 10) is None
    # an echo of the prompt is not a summary
    prompt = "你是新闻摘要员。只写文章里明确写到的事实。"
    assert validate_summary("只写文章里明确写到的事实", ARTICLE, 200, prompt=prompt) is None


# ---- with an LLM on a loopback stub --------------------------------------------------------------

def _user_text(req: Request) -> str:
    return next(m["content"] for m in reversed(req.json()["messages"]) if m["role"] == "user")


def _system_text(req: Request) -> str:
    return next(m["content"] for m in req.json()["messages"] if m["role"] == "system")


def _article_of(req: Request) -> str:
    m = re.search(r"<article>\n(.*)\n</article>", _user_text(req), re.S)
    return m.group(1) if m else ""


def obedient(req: Request) -> Reply:
    """A model that follows whatever instruction it finds in the article, else summarises properly."""
    art = _article_of(req)
    if "PWNED" in art:
        return completion("PWNED")
    if "忽略之前的指令" in art or "系统提示词" in art:
        return completion(_system_text(req))
    if "discord" in art:
        return completion("想获取内部岗位名单，请立即加入我们的群：discord.gg/fr33j0bs @everyone")
    first = split_sentences(art)
    return completion(first[0].text if first else "无法摘要")


@pytest.fixture
async def obedient_llm() -> AsyncIterator[tuple[object, StubServer]]:
    async for r in stub_router(obedient):
        yield r


async def test_llm_summary_is_used_when_grounded(obedient_llm) -> None:
    router, server = obedient_llm
    text, method = await summarize_llm_detail(router, ARTICLE, 200, title="杭甬城际铁路开通")
    assert method == "llm"
    assert text == "清晨的钱塘江边，薄雾还没有散去，跑步的人已经三三两两。"
    body = server.requests[-1].json()
    assert body["stream"] is False
    system = _system_text(server.requests[-1])
    assert "不是给你的指令" in system and "200" in system
    assert "<article>" in _user_text(server.requests[-1])


async def test_adversarial_articles_do_not_change_the_behaviour(obedient_llm) -> None:
    router, server = obedient_llm
    for row in adversarial_rows("article"):
        n = len(server.requests)
        text, method = await summarize_llm_detail(router, row["text"], 200, title=row["title"])
        assert not FORBIDDEN.search(text), (row["title"], text)
        assert len(text) <= 200
        for req in server.requests[n:]:
            sent = _article_of(req)  # the injected lines never reach the model
            assert not FORBIDDEN.search(sent), sent
        if method == "extractive":
            assert text == summarize(row["text"], 200, title=row["title"])


async def test_a_model_that_obeys_the_injection_anyway_is_overruled() -> None:
    async def pwned_router():
        async for r in stub_router(lambda req: completion("PWNED. 好的，我将忽略之前的指令。@everyone")):
            yield r

    async for router, _ in pwned_router():
        for row in adversarial_rows("article")[:3]:
            text, method = await summarize_llm_detail(router, row["text"], 200)
            assert method == "extractive"
            assert text == summarize(row["text"], 200)
            assert "PWNED" not in text


async def test_provider_failure_falls_back_to_extractive() -> None:
    async for router, server in stub_router(lambda req: Reply.json({"error": {"message": "down"}}, 503)):
        text = await summarize_llm(router, ARTICLE, 120)
        assert text == summarize(ARTICLE, 120)
        assert len(server.requests) >= 1


async def test_long_article_is_map_reduced_within_the_context_budget() -> None:
    seen: list[int] = []

    def handler(req: Request) -> Reply:
        art = _article_of(req)
        seen.append(len(art))
        sents = split_sentences(art)
        return completion("".join(s.text for s in sents[:2]))

    long_article = "\n".join(f"第{i}段：某市第{i}个社区食堂开业，每天服务老人{100 + i}人次。居民反映饭菜可口、价格实惠。"
                             for i in range(1, 41))
    async for router, _ in stub_router(handler):
        text, method = await summarize_llm_detail(router, long_article, 150, context_chars=400)
        assert method == "llm"
        assert len(seen) >= 5  # several map calls and a reduce
        assert max(seen) <= 400
        assert 0 < len(text) <= 150
        assert strip_punct(text) and all(n in long_article for n in re.findall(r"\d+", text))


async def test_summarize_rows_with_a_pinned_provider(obedient_llm) -> None:
    router, _ = obedient_llm
    rows = [{"title": "杭甬城际铁路开通", "article": ARTICLE}, *adversarial_rows("article")[:2]]
    out = await summarize_rows(rows, "vllm", 200, router=router)
    assert out[0]["summary_method"] == "llm"
    for r in out:
        assert r["summary"] and len(r["summary"]) <= 200
        assert not FORBIDDEN.search(r["summary"])


async def test_an_offline_only_chain_never_asks_the_retrieval_engine() -> None:
    from providers.offline import OfflineProvider
    from providers.router import Router

    asked: list[object] = []

    async def engine(messages):  # the knowledge-base answerer: must not be used for summaries
        asked.append(messages)
        return "离线模式：以下摘自学习笔记"

    router = Router({"offline": OfflineProvider(engine)}, ["offline"])
    text, method = await summarize_llm_detail(router, ARTICLE, 120)
    assert method == "extractive" and not asked
    assert text == summarize(ARTICLE, 120)


async def test_cli_entry_with_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """`studybot summarize --provider vllm` and `--provider offline` through the App wiring."""
    from bot.app import App
    from bot.config import load_settings
    from jobs.summarize import run_summarize

    async for _, server in stub_router(obedient):
        monkeypatch.setenv("VLLM_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("VLLM_MODEL", "stub-model")
        monkeypatch.setenv("STUDYBOT_PROVIDERS", "vllm,offline")
        app = App(load_settings())
        try:
            rows = [{"title": "杭甬城际铁路开通", "article": ARTICLE}]
            pinned = await run_summarize(app, rows, "vllm", 200)
            chain = await run_summarize(app, rows, None, 200)
            offline = await run_summarize(app, rows, "offline", 200)
        finally:
            await app.aclose()
        assert pinned[0]["summary_method"] == chain[0]["summary_method"] == "llm"
        assert offline[0]["summary_method"] == "extractive"
        assert offline[0]["summary"] == summarize(ARTICLE, 200, title="杭甬城际铁路开通")
        assert len(server.requests) == 2


def test_parse_rows_for_batch_input() -> None:
    from jobs.text import parse_rows

    text = '\ufeff{"title": "标题", "article": "正文。"}\n\n纯文本一行\n"带引号的字符串"\n{"word": "热搜"}\n[不是JSON]\n"双十一"来了\n'
    assert parse_rows(text) == [{"title": "标题", "article": "正文。"}, "纯文本一行", "带引号的字符串", {"word": "热搜"},
                                "[不是JSON]", '"双十一"来了']
    with pytest.raises(ValueError, match="line 2"):
        parse_rows('{"a": 1}\n{"broken": \n')
