"""Retrieval over the built-in notes (the session index, built once with the bundled model)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from bot.knowledge.answer import extract, is_relevant
from bot.knowledge.embed import get_embedder
from bot.knowledge.index import IndexStore
from bot.knowledge.lexical import bigram_tokens, word_tokens
from bot.knowledge.retrieve import MODES, Retriever, expand_query


@pytest.fixture(scope="module")
def retriever(kb_data_dir: Path) -> Retriever:
    emb = get_embedder()
    return Retriever(IndexStore(kb_data_dir, emb).ensure(), emb)


# Questions written for these tests (not in bench/data/rag), worded unlike the notes:
# paraphrases, English questions about Chinese notes, abbreviations. Any of the listed files is right.
CASES = [
    ("How does LoRA cut down the number of weights you have to train?", {"sft_peft.md"}),
    ("Why does the KV cache get bigger as the conversation grows longer?", {"inference.md"}),
    ("What is the difference between pre-norm and post-norm?", {"llm_architecture.md"}),
    ("奖励模型是用什么数据训练出来的？", {"rlhf.md"}),
    ("BM25 和向量检索的结果怎么合并？", {"rag.md"}),
    ("想在笔记本上跑 7B 模型，压成 4 比特会损失多少效果？", {"quantization.md", "quickstart.md"}),
    ("PPL 是怎么计算的？", {"evaluation.md", "nlp.md"}),
    ("GQA 解决了什么问题？", {"inference.md", "llm_architecture.md"}),
    ("lr 设得太大训练会怎样？", {"ml_math.md", "pretraining.md"}),
]


@pytest.mark.parametrize(("question", "files"), CASES)
def test_question_lands_on_the_right_file_in_top_3(retriever: Retriever, question: str, files: set[str]) -> None:
    hits = retriever.search(question, 3)
    got = [h.chunk.path.removeprefix("knowledge/") for h in hits]
    assert files & set(got), f"{question}: {got}"


def test_every_mode_ranks_and_respects_k(retriever: Retriever) -> None:
    for mode in MODES:
        hits = retriever.search("LoRA 低秩适配", 4, mode)
        assert 0 < len(hits) <= 4
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert all(a.score >= b.score for a, b in pairwise(hits))
        assert hits[0].chunk.path == "knowledge/sft_peft.md", mode


def test_empty_and_huge_queries(retriever: Retriever) -> None:
    assert retriever.search("", 5) == [] and retriever.search("   \n ", 5) == []
    hits = retriever.search("什么是 KV Cache？" + "啊" * 10_000, 3)
    assert hits and hits[0].chunk.path.endswith(("inference.md", "quantization.md"))


def test_sources_have_the_documented_shape(retriever: Retriever) -> None:
    src = retriever.search("RoPE 旋转位置编码", 1)[0].as_source()
    assert {"title", "path", "section", "score", "snippet"} <= set(src)
    assert src["path"] == "knowledge/positional_encoding.md" and "RoPE" in str(src["section"]) + str(src["snippet"])
    assert isinstance(src["score"], float) and 0 < len(str(src["snippet"])) <= 240


def test_query_expansion() -> None:
    assert "学习率" in expand_query("lr 怎么设")
    assert "低秩适配" in expand_query("What is LoRA?")
    assert "损失" in expand_query("which tokens count in the losses")  # plural form
    assert "kv cache" in expand_query("GQA").lower()
    assert expand_query("没有缩写的问题") == "没有缩写的问题"
    assert "学习率" not in expand_query("flr 和 lrx")  # whole words only


def test_tokenizers() -> None:
    assert "学习率" in word_tokens("学习率预热")
    assert word_tokens("The tokens are counted") == ["token", "counted"]
    assert "的" not in word_tokens("模型的参数") and "参数" in word_tokens("模型的参数")
    assert bigram_tokens("注意力 attention") == ["注意", "意力", "attention"]


OFF_TOPIC = ["今天天气怎么样", "帮我订一张去上海的机票", "红烧肉怎么做才好吃", "What is the capital of France?",
             "今年春节放几天假", "How to fix a flat bicycle tire?", "如何提高跑步速度"]


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_off_topic_questions_are_not_found(retriever: Retriever, question: str) -> None:
    hits = retriever.search(question, 5)
    assert not any(is_relevant(h) for h in hits), [(h.chunk.heading, h.lexical, h.matched, h.cosine) for h in hits]
    assert not extract(question, hits).found


# With a model configured, ask segments the question with the index's own vocabulary (no jieba
# dictionary load). Each of these once passed as "found" that way: English words cut into note
# words (w + hat, c + api + tal), unknown Chinese words cut into single characters (红烧 + 肉, 好 + 吃).
FAST_OFF_TOPIC = ["What is the capital of France?", "Who won the 2022 football World Cup?", "红烧肉怎么做才好吃",
                  "推荐几部好看的电影", "周末去哪里爬山比较好", "iPhone 电池不耐用怎么办"]


@pytest.mark.parametrize("question", FAST_OFF_TOPIC)
def test_off_topic_questions_are_not_found_with_fast_segmentation(retriever: Retriever, question: str) -> None:
    hits = retriever.search(question, 5, fast=True)
    assert not any(is_relevant(h) for h in hits), [(h.chunk.heading, h.lexical, h.matched, h.cosine) for h in hits]


def test_fast_segmentation_keeps_latin_words_whole_and_drops_chinese_stopwords(retriever: Retriever) -> None:
    tokens = retriever.index.query_tokens
    assert tokens("What is the capital of France?") == ["capital", "france"]
    assert tokens("iPhone 电池不耐用怎么办") == ["iphone", "电池", "不耐用"]
    assert "lora" in tokens("LoRA的秩怎么选") and "秩" in tokens("LoRA的秩怎么选")
    assert tokens("few-shot 提示") == word_tokens("few-shot 提示")


def test_fast_segmentation_finds_the_study_questions_too(retriever: Retriever) -> None:
    for question, files in CASES:
        hits = retriever.search(question, 5, fast=True)
        assert any(is_relevant(h) for h in hits), question
        assert {h.chunk.path.split("/")[-1] for h in hits[:3]} & files, question


def test_short_exact_term_is_found(retriever: Retriever) -> None:
    for q in ("困惑度", "GGUF", "什么是LoRA"):
        assert extract(q, retriever.search(q, 5)).found, q
