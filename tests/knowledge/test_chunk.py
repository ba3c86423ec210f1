"""The chunker: heading paths, line ranges, code blocks, sentence ends, MDX and HTML input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.knowledge.chunk import MAX_CHARS, chunk_file, chunk_markdown, clean_mdx, html_to_markdown
from bot.knowledge.index import builtin_documents

NOTE = """---
title: 测试笔记
topic: demo
---

# 测试笔记

开头的一段话，介绍这篇笔记。

## 第一节

第一节的内容。

### 小节 A

小节 A 的内容，讲 LoRA。

## 第二节

第二节的内容。
"""


def lines_of(text: str, c) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(text.split("\n")[c.start_line - 1:c.end_line])


def test_heading_paths_titles_and_line_ranges() -> None:
    chunks = chunk_markdown(NOTE, "notes/demo.md")
    assert [c.heading_path for c in chunks] == [
        ["测试笔记"], ["测试笔记", "第一节"], ["测试笔记", "第一节", "小节 A"], ["测试笔记", "第二节"]]
    assert [c.heading for c in chunks] == ["", "第一节", "小节 A", "第二节"]
    assert {c.title for c in chunks} == {"测试笔记"} and {c.topic for c in chunks} == {"demo"}
    assert chunks[2].section == "第一节 › 小节 A"
    for c in chunks:  # line numbers count the front matter: they point into the real file
        assert c.text in lines_of(NOTE, c)
    assert (chunks[2].start_line, chunks[2].end_line) == (16, 16)


def test_line_ranges_hold_for_every_builtin_chunk() -> None:
    for doc in builtin_documents():
        for c in chunk_markdown(doc.text, doc.path):
            span = lines_of(doc.text, c)
            # every line of the chunk is inside its range (long paragraphs may be split within a line)
            for line in c.text.split("\n"):
                assert line.strip() in span, (doc.path, c.start_line, line)
            assert len(c.text) <= MAX_CHARS * 2 or "```" in c.text


def test_title_falls_back_to_h1_then_file_name() -> None:
    assert chunk_markdown("# 大标题\n\n正文内容在这里。\n", "a.md")[0].title == "大标题"
    assert chunk_markdown("只有正文，没有标题。\n", "dir/plain.txt")[0].title == "plain"


def test_second_h1_is_part_of_the_path() -> None:
    chunks = chunk_markdown("# Part one\n\nalpha text\n\n# Part two\n\nbeta text\n", "x.md")
    assert chunks[1].heading_path == ["Part one", "Part two"] and chunks[1].heading == "Part two"


def test_code_blocks_are_never_split_and_hide_their_comments() -> None:
    code = "\n".join(f"x_{i} = {i}  # 第 {i} 行。很长的注释。" for i in range(80))
    text = f"# 代码\n\n## 例子\n\n前面的说明。\n\n```python\n# not a heading\n{code}\n```\n\n后面的说明。\n"
    chunks = chunk_markdown(text, "c.md")
    with_code = [c for c in chunks if "```python" in c.text]
    assert len(with_code) == 1
    block = with_code[0].text
    assert block.count("```") == 2 and "x_0 = 0" in block and "x_79 = 79" in block
    assert all(c.heading != "not a heading" for c in chunks)
    assert all("not a heading" not in " ".join(c.heading_path) for c in chunks)


def test_long_chinese_paragraph_splits_at_sentence_ends() -> None:
    para = "".join(f"这是第{i}句话，用来测试切块在中文句号处断开。" for i in range(60))
    chunks = chunk_markdown(f"# 长段落\n\n{para}\n", "long.md")
    assert len(chunks) > 1
    for c in chunks:
        assert len(c.text) <= MAX_CHARS
        assert c.text.endswith("。")  # never in the middle of a sentence
    assert "".join(c.text for c in chunks) == para  # nothing lost or repeated


def test_long_english_paragraph_keeps_spaces_between_sentences() -> None:
    para = " ".join(f"Sentence number {i} talks about attention heads." for i in range(40))
    chunks = chunk_markdown(f"# Long\n\n{para}\n", "en.md")
    assert len(chunks) > 1
    assert all(".Sentence" not in c.text for c in chunks)
    assert " ".join(c.text for c in chunks) == para


def test_long_table_is_split_between_rows() -> None:
    rows = "\n".join(f"| 模型{i} | 参数量 {i}B | 说明：这一行描述模型{i}。 |" for i in range(60))
    chunks = chunk_markdown(f"# 表格\n\n| 模型 | 参数 | 说明 |\n|---|---|---|\n{rows}\n", "t.md")
    assert len(chunks) > 1
    for c in chunks:
        assert all(line.startswith("|") and line.endswith("|") for line in c.text.split("\n"))
        assert c.start_line < c.end_line or c.text.count("\n") == 0


def test_html_comments_anchors_and_presentational_tags_are_dropped() -> None:
    text = ('<!-- DISABLE-FRONTMATTER -->\n# 总结 [[总结]]\n\n<div align="center"><img src="x.png"> '
            'Follow <a href="https://x">me</a></div>\n\n正文 `<div>` 保留在代码里。\n')
    chunks = chunk_markdown(text, "r.md")
    assert chunks[0].title == "总结" and "[[" not in chunks[0].heading_path[0]
    joined = "\n".join(c.text for c in chunks)
    assert "<!--" not in joined and "<img" not in joined and "<a " not in joined
    assert "Follow me" in joined and "`<div>`" in joined


MDX = """import Tip from "./tip"

# LoRA 章节 [[lora]]

<CourseFloatingBanner chapter={2}
  classNames="absolute z-10 right-0 top-0"
  notebooks={[
    {label: "Colab", value: "https://colab.example/x.ipynb"},
]} />

LoRA 冻结原模型，只训练低秩矩阵。<Youtube id="abc" />

{#if fw === 'pt'}

<Tip>

PyTorch 版本的提示。

</Tip>

{:else}

TensorFlow 版本的提示。

{/if}

### 1. 哪个说法正确？

<Question
\tchoices={[
\t\t{
\t\t\ttext: "LoRA 训练全部参数",
\t\t\texplain: "不对，它冻结了原权重。"
\t\t},
\t\t{
\t\t\ttext: "LoRA 只训练低秩矩阵",
\t\t\texplain: "正确！",
\t\t\tcorrect: true
\t\t}
\t]}
/>

```python
x = "<Question>"  # code is left alone
```
"""


def test_mdx_prose_with_a_less_than_sign_is_kept() -> None:
    text = "Compare a <B and later.\n\nAnother paragraph with x > 3.\n"
    assert clean_mdx(text) == text


def test_mdx_components_are_stripped_and_quiz_text_kept() -> None:
    cleaned = clean_mdx(MDX)
    assert cleaned.count("\n") == MDX.count("\n")  # line numbers stay true
    chunks = chunk_markdown(MDX, "course/ch1.mdx")
    joined = "\n".join(c.text for c in chunks)
    for junk in ("CourseFloatingBanner", "classNames", "colab.example", "<Youtube", "<Tip>", "</Tip>",
                 "import Tip", "{#if", "{:else}", "{/if}", "choices={[", "<Question\n"):
        assert junk not in joined, junk
    assert "LoRA 冻结原模型，只训练低秩矩阵。" in joined
    assert "PyTorch 版本的提示。" in joined and "TensorFlow 版本的提示。" in joined
    quiz = next(c for c in chunks if c.heading == "1. 哪个说法正确？")
    assert "LoRA 只训练低秩矩阵" in quiz.text and "不对，它冻结了原权重。" in quiz.text
    assert 'x = "<Question>"' in joined  # inside code: untouched
    assert chunks[0].title == "LoRA 章节"
    for c in chunks:
        span = "\n".join(MDX.split("\n")[c.start_line - 1:c.end_line])
        assert c.text.split("\n")[0].strip("- ")[:6] in span


HTML = """<!doctype html><html><head><title>Page title</title><style>p{color:red}</style>
<script>var secret = 1;</script></head><body><nav>Home | About</nav>
<h1>Study page</h1><p>Intro paragraph about <b>attention</b>.</p>
<h2>Lists</h2><ul><li><p>first item</p></li><li>second item</li></ul>
<div>loose text <a href="#">with a link</a></div>
<h3>Code</h3><pre><code>def f():
    return 1
</code></pre>
<table><tr><th>name</th><th>size</th></tr><tr><td>bert</td><td>110M</td></tr></table>
<footer>copyright</footer></body></html>"""


def test_html_headings_blocks_tables_and_code() -> None:
    md = html_to_markdown(HTML)
    chunks = chunk_markdown(md, "page.html")
    joined = "\n".join(c.text for c in chunks)
    assert chunks[0].title == "Study page"
    assert {tuple(c.heading_path) for c in chunks} >= {("Study page",), ("Study page", "Lists"),
                                                         ("Study page", "Lists", "Code")}
    assert "Intro paragraph about attention." in joined
    assert joined.count("first item") == 1  # <p> inside <li> is not repeated
    assert "loose text with a link" in joined
    assert "def f():\n    return 1" in joined
    assert "name | size" in joined and "bert | 110M" in joined
    for junk in ("secret", "color:red", "Home | About", "copyright"):
        assert junk not in joined


def test_html_without_h1_uses_the_page_title(tmp_path: Path) -> None:
    f = tmp_path / "t.html"
    f.write_text("<html><head><title>Only title</title></head><body><p>Body text here.</p></body></html>",
                 encoding="utf-8")
    chunks = chunk_file(f, str(f))
    assert chunks[0].title == "Only title" and "Body text here." in chunks[0].text


@pytest.mark.parametrize("text", ["", "\n\n", "---\n---\n", "```\nunclosed code", "# 只有标题\n"])
def test_degenerate_documents_do_not_crash(text: str) -> None:
    for c in chunk_markdown(text, "d.md"):
        assert c.text.strip()


def test_unclosed_front_matter_and_bad_yaml() -> None:
    chunks = chunk_markdown("---\ntitle: [unclosed\n---\n\n正文。\n", "y.md")
    assert chunks and chunks[-1].text == "正文。"


SHARED_KB = Path(__file__).resolve().parents[3] / "shared" / "knowledge"


@pytest.mark.skipif(not SHARED_KB.is_dir(), reason=f"{SHARED_KB} not present (the shared course material)")
def test_shared_course_files_chunk_cleanly() -> None:
    """The real HF course MDX and the LLM-course README: no JSX, anchors or HTML left over."""
    files = sorted(f for f in SHARED_KB.rglob("*") if f.suffix in (".md", ".mdx"))
    assert len(files) > 20
    n = 0
    for f in files:
        raw = f.read_text(encoding="utf-8")
        for c in chunk_file(f, str(f)):
            n += 1
            assert "[[" not in " ".join(c.heading_path), (f, c.heading_path)
            prose = "\n".join(part for i, part in enumerate(c.text.split("```")) if i % 2 == 0)
            outside_code = re.sub(r"`[^`\n]*`", "", prose)  # inline code may name a tag
            for junk in ("<Question", "<CourseFloatingBanner", "<Youtube", "{#if", "{/if}", "<!--", "<img"):
                assert junk not in outside_code, (f, junk, c.start_line)
            assert 1 <= c.start_line <= c.end_line <= raw.count("\n") + 1
    assert n > 500
