"""The index on disk: built once, reused, incremental, self-healing, safe under concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from bot.knowledge import KnowledgeBase
from bot.knowledge.embed import get_embedder
from bot.knowledge.index import (
    INDEX_VERSION,
    IndexStore,
    KnowledgeIndex,
    _text_key,
    builtin_documents,
    folder_documents,
)
from bot.knowledge.retrieve import Retriever

from .conftest import FakeEmbedder

ROOT = Path(__file__).resolve().parents[2]


def gens(store: IndexStore) -> list[str]:
    return sorted(p.name for p in store.dir.glob("gen-*"))


def current(store: IndexStore) -> Path:
    return store.dir / (store.dir / "CURRENT").read_text().strip()


def assert_usable(idx: KnowledgeIndex, emb: FakeEmbedder, n: int) -> None:
    assert len(idx) == n and idx.vectors.shape == (n, emb.dim)
    hits = Retriever(idx, emb).search("低秩矩阵 LoRA", 3)
    assert hits and hits[0].chunk.path.endswith("lora.md")


def test_built_once_then_loaded(tmp_path: Path, notes_dir: Path, fake_embedder: FakeEmbedder) -> None:
    docs = folder_documents([notes_dir])
    first = IndexStore(tmp_path, fake_embedder).ensure(docs)
    embedded = fake_embedder.texts
    assert embedded == len(first) == first.meta["n_chunks"] > 0
    again = IndexStore(tmp_path, fake_embedder)
    idx = again.ensure(docs)
    assert fake_embedder.texts == embedded  # nothing embedded the second time
    assert again.notice is None and gens(again) == ["gen-1"]
    assert [c.text for c in idx.chunks] == [c.text for c in first.chunks]
    assert np.allclose(idx.vectors, first.vectors)


def test_adding_a_folder_embeds_only_the_new_files(tmp_path: Path, notes_dir: Path) -> None:
    emb = FakeEmbedder()
    data = tmp_path / "data"
    store = IndexStore(data, emb)
    store.add_sources([notes_dir])
    base = store.ensure()  # built-in notes + the folder
    n_builtin = sum(1 for c in base.chunks if c.path.startswith("knowledge/"))
    assert n_builtin > 100 and emb.texts == len(base)

    more = tmp_path / "more"
    more.mkdir()
    (more / "dpo.md").write_text("# DPO\n\nDPO 直接用偏好数据优化策略，不需要单独的奖励模型。\n", encoding="utf-8")
    (more / "skip.py").write_text("print('not a note')\n", encoding="utf-8")
    (more / ".hidden").mkdir()
    (more / ".hidden" / "secret.md").write_text("# hidden\n\nnot indexed\n", encoding="utf-8")
    before = emb.texts
    store = IndexStore(data, emb)
    store.add_sources([more])
    idx = store.ensure()
    assert emb.texts - before == 1  # only dpo.md's one chunk: every unchanged file was skipped by hash
    assert len(idx) == len(base) + 1
    assert not any("secret" in c.path or c.path.endswith(".py") for c in idx.chunks)

    # editing one file re-embeds only the chunks whose text changed
    f = notes_dir / "kv.md"
    f.write_text(f.read_text(encoding="utf-8") + "\n## 量化\n\nKV Cache 也可以量化到 8 比特。\n", encoding="utf-8")
    before = emb.texts
    idx = IndexStore(data, emb).ensure()
    assert emb.texts - before == 1
    assert any("8 比特" in c.text for c in idx.chunks)

    # and a removed folder drops out of the index
    (more / "dpo.md").unlink()
    idx = IndexStore(data, emb).ensure()
    assert not any(c.path.endswith("dpo.md") for c in idx.chunks)


def _corrupt_chunks(g: Path) -> None:
    lines = (g / "chunks.jsonl").read_text(encoding="utf-8").split("\n")
    lines[len(lines) // 2] = '{"path": "x", broken'
    (g / "chunks.jsonl").write_text("\n".join(lines), encoding="utf-8")


def _truncate_vectors(g: Path) -> None:
    raw = (g / "vectors.npy").read_bytes()
    (g / "vectors.npy").write_bytes(raw[: len(raw) // 2])


def _edit_meta(**changes: object) -> Callable[[Path], None]:
    def edit(g: Path) -> None:
        meta = json.loads((g / "meta.json").read_text())
        meta.update(changes)
        (g / "meta.json").write_text(json.dumps(meta))
    return edit


DAMAGE: dict[str, Callable[[Path], None]] = {
    "missing CURRENT": lambda g: (g.parent / "CURRENT").unlink(),
    "CURRENT names a missing generation": lambda g: (g.parent / "CURRENT").write_text("gen-99"),
    "CURRENT is garbage": lambda g: (g.parent / "CURRENT").write_text("../../etc"),
    "corrupt chunks.jsonl": _corrupt_chunks,
    "chunks.jsonl with a missing field": lambda g: (g / "chunks.jsonl").write_text('{"w": [], "b": []}\n'),
    "truncated vectors.npy": _truncate_vectors,
    "empty vectors.npy": lambda g: (g / "vectors.npy").write_bytes(b""),
    "missing vectors.npy": lambda g: (g / "vectors.npy").unlink(),
    "vectors of another shape": lambda g: np.save(g / "vectors.npy", np.zeros((2, 3), dtype=np.float32)),
    "meta.json not JSON": lambda g: (g / "meta.json").write_text("{nope"),
    "meta.json not an object": lambda g: (g / "meta.json").write_text("[1, 2]"),
    "older INDEX_VERSION": _edit_meta(version=INDEX_VERSION - 1),
    "another embedder": _edit_meta(embedder="st:some-other-model"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_index_is_rebuilt_with_a_notice(damage: str, tmp_path: Path, notes_dir: Path) -> None:
    emb = FakeEmbedder()
    docs = folder_documents([notes_dir])
    n = len(IndexStore(tmp_path, emb).ensure(docs))
    g = current(IndexStore(tmp_path, emb))
    DAMAGE[damage](g)
    store = IndexStore(tmp_path, emb)
    idx = store.ensure(docs)
    assert store.notice and "rebuild" in store.notice  # the user is told, in both languages
    assert_usable(idx, emb, n)
    fresh = IndexStore(tmp_path, emb)
    assert_usable(fresh.ensure(docs), emb, n)
    assert fresh.notice is None  # healed for good


def test_older_version_keeps_its_vectors(tmp_path: Path, notes_dir: Path) -> None:
    """A version bump re-chunks and re-tokenises, but does not re-embed unchanged text."""
    emb = FakeEmbedder()
    docs = folder_documents([notes_dir])
    IndexStore(tmp_path, emb).ensure(docs)
    _edit_meta(version=INDEX_VERSION - 1)(current(IndexStore(tmp_path, emb)))
    before = emb.texts
    store = IndexStore(tmp_path, emb)
    store.ensure(docs)
    assert store.notice and emb.texts == before


def test_knowledge_base_reports_the_notice_and_never_crashes(tmp_path: Path, notes_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    emb = FakeEmbedder()
    monkeypatch.setattr("bot.knowledge.get_embedder", lambda model=None: emb)
    monkeypatch.setattr("bot.knowledge.index.builtin_documents", lambda: [])  # keep it small
    kb = KnowledgeBase(tmp_path, notify=lambda m: None)
    kb.index([notes_dir])
    (current(kb.store()) / "chunks.jsonl").write_text("garbage\n")
    seen: list[str] = []
    kb2 = KnowledgeBase(tmp_path, notify=seen.append)
    hits = kb2.search_sync("zorblax", 3)
    assert seen and "rebuild" in seen[0]
    assert hits and hits[0].chunk.path.endswith("lora.md")


def test_two_threads_build_once(tmp_path: Path, notes_dir: Path) -> None:
    emb = FakeEmbedder(delay=0.3)  # slow enough that both threads arrive while the first builds
    docs = folder_documents([notes_dir])
    barrier = threading.Barrier(2)
    results: list[KnowledgeIndex] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            barrier.wait()
            results.append(IndexStore(tmp_path, emb).ensure(docs))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(results) == 2 and len(results[0]) == len(results[1]) > 0
    assert emb.texts == len(results[0])  # embedded once
    assert gens(IndexStore(tmp_path, emb)) == ["gen-1"]


_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.knowledge.conftest import FakeEmbedder
from bot.knowledge.index import IndexStore, folder_documents
emb = FakeEmbedder(delay=0.4)
docs = folder_documents([Path({notes!r})])
while time.time() < {start}:
    time.sleep(0.005)
idx = IndexStore(Path({data!r}), emb).ensure(docs)
print(json.dumps({{"n": len(idx), "embedded": emb.texts}}))
"""


def test_two_processes_build_once(tmp_path: Path, notes_dir: Path) -> None:
    import time

    data = tmp_path / "data"
    start = time.time() + 2.5  # both children start building at the same moment
    script = _CHILD.format(root=str(ROOT), notes=str(notes_dir), data=str(data), start=start)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[0]["n"] == outs[1]["n"] > 0
    assert sorted(o["embedded"] for o in outs) == [0, outs[0]["n"]]  # one built, the other loaded
    assert sorted(p.name for p in (data / "index" / "main").glob("gen-*")) == ["gen-1"]


def test_shipped_vectors_cover_every_builtin_chunk() -> None:
    """prompts/knowledge/_vectors.npz must be regenerated when the chunker changes
    (`studybot kb index --export-builtin prompts/knowledge/_vectors.npz`)."""
    with (resources.files("prompts") / "knowledge" / "_vectors.npz").open("rb") as fh:
        z = np.load(fh, allow_pickle=False)
        keys = {str(k) for k in z["keys"]}
        assert str(z["embedder"]) == get_embedder().name
        assert z["vectors"].shape[1] == get_embedder().dim
    from bot.knowledge.index import _chunks_of

    missing = [c.heading_path for d in builtin_documents() for c in _chunks_of(d)
               if _text_key(c.embed_text()) not in keys]
    assert not missing, f"{len(missing)} built-in chunks have no shipped vector, e.g. {missing[:3]}"


def test_session_index_is_reused_and_needed_no_embedding(kb_data_dir: Path) -> None:
    store = IndexStore(kb_data_dir, get_embedder())
    idx = store.ensure()
    assert store.notice is None and idx.meta["embedded"] == 0  # every vector came from _vectors.npz
    assert {c.path for c in idx.chunks} == {d.path for d in builtin_documents()}
