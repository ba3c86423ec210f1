"""Hybrid retrieval: embeddings + BM25 over jieba tokens + character-bigram TF-IDF, fused by
reciprocal rank (k = 60), after expanding common abbreviations in the query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .chunk import Chunk
from .embed import Embedder
from .index import KnowledgeIndex
from .lexical import bigram_tokens, word_tokens

RRF_K = 60
CANDIDATES = 50
MAX_QUERY_CHARS = 2000  # a 10,000-character question is cut, not refused
QUERY_EMBED_CHARS = 200  # the embedder sees the question itself (expansions are for lexical search)

# abbreviation → what the notes call it (both directions help: English questions about Chinese notes)
EXPANSIONS: dict[str, str] = {
    "lora": "LoRA 低秩适配 低秩分解 Low-Rank Adaptation",
    "qlora": "QLoRA 4-bit 量化 LoRA NF4",
    "rlhf": "RLHF 人类反馈强化学习 奖励模型 PPO",
    "dpo": "DPO 直接偏好优化 偏好数据",
    "ppo": "PPO 近端策略优化",
    "grpo": "GRPO 组相对策略优化",
    "sft": "SFT 监督微调 指令微调",
    "peft": "PEFT 参数高效微调",
    "kv cache": "KV cache 键值缓存 KV 缓存",
    "kv": "KV cache 键值缓存",
    "rag": "RAG 检索增强生成 检索",
    "rope": "RoPE 旋转位置编码",
    "alibi": "ALiBi 线性偏置 位置编码",
    "yarn": "YaRN 上下文扩展 位置编码",
    "gqa": "GQA 分组查询注意力",
    "mqa": "MQA 多查询注意力",
    "mha": "MHA 多头注意力",
    "moe": "MoE 混合专家",
    "llm": "大语言模型 大模型",
    "gguf": "GGUF llama.cpp 量化格式",
    "gptq": "GPTQ 量化",
    "awq": "AWQ 激活感知量化",
    "bpe": "BPE 字节对编码 分词",
    "ttft": "TTFT 首 token 延迟",
    "cot": "CoT 思维链",
    "ppl": "困惑度 perplexity",
    "mmlu": "MMLU 评测 基准",
    "fsdp": "FSDP ZeRO 分布式训练",
    "attention": "注意力 注意力机制",
    "self-attention": "自注意力 注意力机制",
    "transformer": "Transformer 架构",
    "tokenizer": "分词器 tokenizer",
    "tokenization": "分词 tokenization",
    "embedding": "嵌入 向量 embedding",
    "quantization": "量化",
    "fine-tuning": "微调",
    "finetune": "微调",
    "pretraining": "预训练",
    "scaling law": "缩放定律 scaling law",
    "chinchilla": "Chinchilla 缩放定律 token 数",
    "prompt": "提示词 prompt",
    "hallucination": "幻觉",
    "learning rate": "学习率",
    "gradient": "梯度",
    "backpropagation": "反向传播",
    "overfitting": "过拟合",
    "evaluation": "评测 评估",
    "deploy": "部署",
    "deployment": "部署",
    "inference": "推理",
    "speculative decoding": "投机解码 推测解码",
    "flashattention": "FlashAttention 注意力 显存",
    "beam search": "束搜索 beam search",
    "temperature": "温度 temperature 采样",
    "top-p": "top-p 核采样",
    "softmax": "softmax 归一化 概率",
    "cross-entropy": "交叉熵",
    "chat template": "对话模板 chat template",
    "reward model": "奖励模型",
    "vram": "显存",
    "gpu": "显卡 GPU 显存",
}
_EXP_RE = re.compile(r"(?<![a-z0-9])(" + "|".join(sorted(map(re.escape, EXPANSIONS), key=len, reverse=True))
                     + r")(?![a-z0-9])")


def expand_query(query: str) -> str:
    low = query.lower()
    extra = [EXPANSIONS[m.group(1)] for m in _EXP_RE.finditer(low)]
    return f"{query} {' '.join(dict.fromkeys(extra))}" if extra else query


@dataclass(slots=True)
class Hit:
    chunk: Chunk
    score: float  # fused score (RRF) or the single method's score
    cosine: float
    lexical: float  # BM25 score of the best lexical match, for "not found" decisions
    rank: int = 0

    def as_source(self, snippet_chars: int = 240) -> dict[str, object]:
        text = " ".join(self.chunk.text.split())
        return {"title": self.chunk.title, "path": self.chunk.path, "section": self.chunk.section,
                "heading": self.chunk.heading, "lines": [self.chunk.start_line, self.chunk.end_line],
                "score": round(float(self.score), 4), "snippet": text[:snippet_chars]}


MODES = ("hybrid", "embed", "bm25", "bigram")


class Retriever:
    def __init__(self, index: KnowledgeIndex, embedder: Embedder) -> None:
        self.index = index
        self.embedder = embedder

    def _rank(self, scores: np.ndarray, n: int = CANDIDATES) -> np.ndarray:
        n = min(n, len(scores))
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        top = np.argpartition(-scores, n - 1)[:n]
        return top[np.argsort(-scores[top], kind="stable")]

    def search(self, query: str, k: int = 5, mode: str = "hybrid") -> list[Hit]:
        query = (query or "").strip()[:MAX_QUERY_CHARS]
        if not query or len(self.index) == 0:
            return []
        expanded = expand_query(query)
        need_embed = mode in ("hybrid", "embed")
        cos = (np.asarray(self.index.vectors @ self.embedder.encode([query[:QUERY_EMBED_CHARS]], is_query=True)[0])
               if need_embed else np.zeros(len(self.index), dtype=np.float32))
        bm = self.index.bm25.search(word_tokens(expanded))  # always: its score backs "not found"
        bg = self.index.tfidf.search(bigram_tokens(expanded)) if mode in ("hybrid", "bigram") else None
        if mode == "embed":
            fused, order = cos, self._rank(cos)
        elif mode == "bm25":
            fused, order = bm, self._rank(bm)
            order = order[bm[order] > 0]
        elif mode == "bigram":
            assert bg is not None
            fused, order = bg, self._rank(bg)
            order = order[bg[order] > 0]
        else:
            assert bg is not None
            fused = np.zeros(len(self.index), dtype=np.float32)
            for scores, only_positive in ((cos, False), (bm, True), (bg, True)):
                ranked = self._rank(scores)
                if only_positive:
                    ranked = ranked[scores[ranked] > 0]
                fused[ranked] += 1.0 / (RRF_K + 1 + np.arange(len(ranked), dtype=np.float32))
            order = self._rank(fused)
            order = order[fused[order] > 0]
        return [Hit(self.index.chunks[i], float(fused[i]), float(cos[i]), float(bm[i]), r + 1)
                for r, i in enumerate(order[:k])]
