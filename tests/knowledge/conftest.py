"""Helpers for the knowledge-base tests: a fast deterministic embedder and small note folders."""

from __future__ import annotations

import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from bot.knowledge.lexical import bigram_tokens


class FakeEmbedder:
    """Hashed bag of bigrams: deterministic, instant, similar texts get similar vectors.
    Counts what it embeds, so tests can tell a rebuild from a reuse."""

    name = "fake:hashed-bigrams"
    dim = 64

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.texts = 0
        self._lock = threading.Lock()

    def encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            if not is_query:
                self.texts += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for tok in bigram_tokens(t):
                out[i, zlib.crc32(tok.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


NOTES = {
    "lora.md": "# LoRA 笔记\n\n## 原理\n\nLoRA 冻结预训练权重，只训练两个低秩矩阵 A 和 B。\n\n"
               "## 秩的选择\n\n秩 r 通常取 8 或 16，可训练参数不到百分之一。zorblax 是这份测试笔记独有的词。\n",
    "kv.md": "# KV Cache 笔记\n\n## 显存\n\nKV Cache 的显存随上下文长度线性增长。\n\n"
             "## 复用\n\n解码时缓存之前 token 的键和值，避免重复计算。\n",
    "rope.txt": "旋转位置编码 RoPE 把查询和键按位置旋转一个角度，内积只取决于相对距离。\n",
}


@pytest.fixture
def notes_dir(tmp_path: Path) -> Path:
    d = tmp_path / "notes"
    d.mkdir()
    for name, text in NOTES.items():
        (d / name).write_text(text, encoding="utf-8")
    return d
