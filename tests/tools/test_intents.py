"""Offline intent routing: obvious requests go to the tools, everything else to retrieval."""

from __future__ import annotations

import pytest

from bot.tools.intents import Intent, quiz_followup, route, to_expression


@pytest.mark.parametrize(("text", "intent"), [
    ("今天微博热搜有哪些？", Intent("weibo_hot")),
    ("微博热搜", Intent("weibo_hot")),
    ("what's trending on weibo", Intent("weibo_hot")),
    ("今天有什么新闻", Intent("news_today")),
    ("人民日报今天头版说了什么", Intent("news_today")),
    ("today's news", Intent("news_today")),
    ("出一道题", Intent("quiz_question")),
    ("再来一题", Intent("quiz_question")),
    ("来一道RAG的题", Intent("quiz_question", {"topic": "rag"})),
    ("出一道难一点的量化题，带答案", Intent("quiz_question", {"topic": "quantization", "difficulty": "hard",
                                                          "reveal_answer": True})),
    ("quiz me on LoRA", Intent("quiz_question", {"topic": "sft_peft"})),
    ("2的10次方加3是多少", Intent("calculator", {"expression": "2**10+3"})),
    ("3*(4+5)", Intent("calculator", {"expression": "3*(4+5)"})),
    ("1024/8", Intent("calculator", {"expression": "1024/8"})),
    ("100减去37再乘以2等于几？", None),  # "再" is not arithmetic: left to retrieval rather than guessed
    ("100减去37乘以2等于几？", Intent("calculator", {"expression": "100-37*2"})),
    ("10除以4", Intent("calculator", {"expression": "10/4"})),
    ("3的平方加4的平方", Intent("calculator", {"expression": "3**2+4**2"})),
    ("根号2乘以3", Intent("calculator", {"expression": "sqrt(2)*3"})),
    ("what is 2+2?", Intent("calculator", {"expression": "2+2"})),
    ("总结一下 https://example.com/post?id=1。", Intent("summarize_url", {"url": "https://example.com/post?id=1"})),
    ("现在几点了", Intent("now")),
    ("今天星期几", Intent("now")),
    # retrieval, not tools
    ("什么是LoRA？", None),
    ("我来问个问题：什么是 KV cache", None),
    ("7B模型需要多少显存", None),
    ("GPT-4 和 GPT-3.5 的区别", None),
    ("余弦相似度怎么算", None),
    ("2024-05-21", None),
    ("1024", None),
    ("", None),
])
def test_route(text: str, intent: Intent | None) -> None:
    assert route(text) == intent


def test_arithmetic_that_the_calculator_will_refuse_still_goes_to_it() -> None:
    # the user asked for arithmetic: the calculator says why it will not (not a notes search)
    assert to_expression("9的99999次方") == "9**99999"
    assert to_expression("1除以0") == "1/0"


def test_quiz_followup_reads_the_question_id_of_the_previous_reply() -> None:
    prev = "【离线模式 · offline】测验（rag · easy · 题号 rag-03）\n..."
    assert quiz_followup("B", prev) == ("rag-03", "B")
    assert quiz_followup("我选c", prev) == ("rag-03", "C")
    assert quiz_followup("答案", prev) == ("rag-03", None)
    assert quiz_followup("B", "没有题号的回答") is None
    assert quiz_followup("B 和 C 有什么区别", prev) is None
