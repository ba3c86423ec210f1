"""The quiz bank as the `quiz_question` tool sees it: a question by topic (a slug or a plain
word such as 量化 or LoRA), difficulty or id, drawn from bot.quiz.bank's validated bank."""

from __future__ import annotations

import random
import re
from typing import Any

from bot.quiz.bank import TOPICS

# words people use for each topic; checked longest first so "位置编码" wins over "编码"
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "quickstart": ("快速入门", "入门", "基础认知"),
    "ml_math": ("数学", "线性代数", "概率", "微积分", "梯度下降", "math"),
    "python_ml": ("python", "numpy", "pandas", "pytorch"),
    "neural_nets": ("神经网络", "反向传播", "感知机", "激活函数", "neural network"),
    "nlp": ("自然语言处理", "nlp", "词向量", "word2vec"),
    "llm_architecture": ("架构", "transformer", "注意力", "attention", "分词", "tokenizer", "解码策略"),
    "positional_encoding": ("位置编码", "rope", "alibi", "yarn", "positional"),
    "instruction_data": ("指令数据", "聊天模板", "chat template", "instruction"),
    "pretraining": ("预训练", "scaling law", "pretrain"),
    "sft_peft": ("微调", "lora", "qlora", "sft", "peft", "fine-tun"),
    "rlhf": ("rlhf", "ppo", "dpo", "grpo", "偏好对齐", "人类反馈"),
    "evaluation": ("评测", "评估", "benchmark", "eval"),
    "quantization": ("量化", "gguf", "gptq", "awq", "quantiz"),
    "inference": ("推理优化", "kv cache", "flashattention", "投机解码", "inference"),
    "rag": ("rag", "检索增强", "向量检索", "retrieval"),
    "prompting": ("提示词", "提示工程", "prompt"),
    "llm_apis": ("api", "接口调用", "国产大模型"),
    "deployment": ("部署", "vllm", "ollama", "llama.cpp", "deploy"),
}
_WORDS = sorted(((w, slug) for slug, ws in TOPIC_WORDS.items() for w in (*ws, slug, slug.replace("_", " "))),
                key=lambda x: -len(x[0]))


def resolve_topic(text: str | None) -> str | None:
    """A topic slug from a slug or a free phrase, or None."""
    low = (text or "").strip().lower()
    if not low:
        return None
    if low in TOPICS:
        return low
    for word, slug in _WORDS:
        if re.search(r"(?<![a-z])" + re.escape(word), low):
            return slug
    return None


def pick(rng: random.Random, *, topic: str | None = None, difficulty: str | None = None,
         qid: str | None = None) -> dict[str, Any] | None:
    """One question of the validated bank (bot.quiz.bank), as its DESIGN §3 dict."""
    from bot.quiz.bank import default_bank

    bank = default_bank()
    if qid:
        q = bank.get(qid)
        return q.as_dict() if q else None
    questions = bank.topic(topic) if topic else bank.questions
    pool = [q for q in questions if difficulty is None or q.difficulty == difficulty]
    if not pool and difficulty:  # a topic without that level still gives a question
        pool = list(questions)
    return rng.choice(pool).as_dict() if pool else None
