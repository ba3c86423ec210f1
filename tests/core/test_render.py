"""bot.render: splitting at Discord's limits without breaking code blocks, embeds within limits,
reasoning hidden, untrusted text defused (property tests with hypothesis)."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.render import (
    EMBED_DESCRIPTION,
    EMBED_FIELD_NAME,
    EMBED_FIELD_VALUE,
    EMBED_FIELDS,
    EMBED_FOOTER,
    EMBED_TITLE,
    EMBED_TOTAL,
    EMBEDS_PER_MESSAGE,
    EmbedField,
    EmbedSpec,
    digest_embeds,
    fences_balanced,
    fit_embed,
    hide_reasoning,
    pack_embeds,
    scrub,
    split_message,
)

# -- splitting ---------------------------------------------------------------------------------

_plain = st.text(alphabet=st.characters(blacklist_characters="`\r", blacklist_categories=("Cs",)), max_size=300)
_fence = st.builds(lambda lang: "```" + lang, st.sampled_from(["", "python", "bash", "json", "c++", "txt"]))
_lines = st.lists(st.one_of(_plain, _plain, _plain, _fence), max_size=80)
_limits = st.sampled_from([64, 100, 500, 2000])


def _no_fences(text: str) -> str:
    """Content without fence markers and whitespace: what splitting must preserve."""
    return re.sub(r"\s", "", re.sub(r"```[\w+#.\-]*", "", text))


def _check(parts: list[str], limit: int) -> None:
    for p in parts:
        assert 0 < len(p) <= limit, (len(p), limit)
        assert fences_balanced(p), p
        assert p.strip()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_lines, _limits)
def test_split_keeps_limits_balances_fences_and_loses_nothing(lines: list[str], limit: int) -> None:
    text = "\n".join(lines)
    parts = split_message(text, limit)
    _check(parts, limit)
    assert _no_fences("\n".join(parts)) == _no_fences(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000), _limits)
def test_split_of_arbitrary_text_keeps_limits_and_balance(text: str, limit: int) -> None:
    _check(split_message(text, limit), limit)


def test_a_9000_character_answer_with_code_blocks() -> None:
    blocks = []
    i = 0
    while sum(map(len, blocks)) < 9000:
        blocks.append(f"第 {i} 段：注意力机制把查询和键做点积。" * 12 + "\n\n```python\n"
                      + "\n".join(f"scores_{i}_{j} = q @ k.T / math.sqrt(d)  # 第 {j} 行" for j in range(25))
                      + "\n```\n")
        i += 1
    text = "\n".join(blocks)
    assert len(text) >= 9000
    parts = split_message(text)
    assert len(parts) >= 5
    _check(parts, 2000)
    # a block cut in two is reopened with its language
    cont = [p for p in parts[1:] if p.startswith("```")]
    assert cont and all(p.startswith("```python\n") for p in cont)
    assert _no_fences("\n".join(parts)) == _no_fences(text)


def test_short_text_is_one_part_and_blank_text_none() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("  \n ") == []
    assert split_message("```py\nx = 1\n```") == ["```py\nx = 1\n```"]


def test_an_unclosed_block_is_closed() -> None:
    (part,) = split_message("look:\n```python\nprint(1)")
    assert part.endswith("\n```") and fences_balanced(part)


def test_inline_fences_are_moved_to_their_own_lines() -> None:
    parts = split_message("run ```bash\nls -la\n``` then done " + "x " * 60, 64)
    _check(parts, 64)


def test_long_lines_are_cut_at_spaces() -> None:
    parts = split_message("word " * 1000, 2000)
    _check(parts, 2000)
    assert all(not p.startswith("rd") for p in parts)


# -- reasoning ---------------------------------------------------------------------------------

def test_hide_reasoning() -> None:
    assert hide_reasoning("<think>let me see</think>答案是 42") == "答案是 42"
    assert hide_reasoning("答案<think>still thinking") == "答案"
    assert hide_reasoning("model opened it in the prompt</think>the answer") == "the answer"
    assert hide_reasoning("<THINK>a</THINK>b<think>c</think>d") == "bd"
    assert hide_reasoning("no reasoning here") == "no reasoning here"


@given(st.text(max_size=200), st.text(max_size=200))
def test_hide_reasoning_never_shows_a_closed_block(before: str, thought: str) -> None:
    thought = thought.replace("<", "")
    out = hide_reasoning(f"{before}<think>{thought}</think>")
    if thought.strip() and "think>" not in before.lower():
        assert thought not in out or thought in before


# -- embeds -------------------------------------------------------------------------------------

_text = st.text(max_size=5000)
_fields = st.lists(st.builds(EmbedField, st.text(max_size=400), st.text(max_size=1500), st.booleans()),
                   max_size=40)
_specs = st.builds(EmbedSpec, st.text(max_size=400), _text, _fields, st.text(max_size=3000), st.text(max_size=300))


def _within_limits(e: EmbedSpec) -> None:
    assert len(e.title) <= EMBED_TITLE
    assert len(e.description) <= EMBED_DESCRIPTION
    assert len(e.fields) <= EMBED_FIELDS
    assert all(0 < len(f.name) <= EMBED_FIELD_NAME and 0 < len(f.value) <= EMBED_FIELD_VALUE for f in e.fields)
    assert len(e.footer) <= EMBED_FOOTER
    assert e.total() <= EMBED_TOTAL


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_specs)
def test_fit_embed_respects_every_limit(spec: EmbedSpec) -> None:
    _within_limits(fit_embed(spec))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(_specs, max_size=14))
def test_pack_embeds_groups_messages_within_limits(specs: list[EmbedSpec]) -> None:
    messages = pack_embeds(specs)
    assert sum(len(m) for m in messages) == len(specs)
    for m in messages:
        assert 1 <= len(m) <= EMBEDS_PER_MESSAGE
        assert sum(e.total() for e in m) <= EMBED_TOTAL
        for e in m:
            _within_limits(e)


_news = st.fixed_dictionaries({"title": st.text(max_size=300), "url": st.sampled_from(
    ["http://paper.people.com.cn/rmrb/a.htm", "", "javascript:alert(1)", "https://x.cn/" + "a" * 600]),
    "page": st.text(max_size=30), "summary": st.text(max_size=400)})
_topic = st.fixed_dictionaries({"rank": st.integers(0, 60) | st.none(), "word": st.text(max_size=80),
                                "heat": st.integers(0, 10**8) | st.none(), "label": st.sampled_from(
                                    ["娱乐", "社会", "科技", ""]), "sublabel": st.sampled_from(["明星", None, ""])})
_digest = st.fixed_dictionaries({"date": st.just("2026-01-02"), "overview": st.text(max_size=5000),
                                 "news": st.lists(_news, max_size=120), "hot_topics": st.lists(_topic, max_size=60),
                                 "errors": st.lists(st.fixed_dictionaries({"source": st.text(max_size=20),
                                                                            "url": st.text(max_size=50),
                                                                            "error": st.text(max_size=300)}),
                                                    max_size=5),
                                 "notes": st.lists(st.text(max_size=300), max_size=5)})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_digest)
def test_digest_embeds_fit_discord(d: dict) -> None:  # type: ignore[type-arg]
    embeds = digest_embeds(d)
    for e in embeds:
        _within_limits(e)
        for f in e.fields:  # unsafe links never become clickable fields
            assert "javascript:" not in f.value
    for m in pack_embeds(embeds):
        assert len(m) <= EMBEDS_PER_MESSAGE and sum(e.total() for e in m) <= EMBED_TOTAL
    names = " ".join(f.name for e in embeds for f in e.fields)
    for n in d["news"]:  # every article is listed
        assert scrub(n["title"]).strip()[:40] in names or not n["title"].strip()


def test_digest_embeds_defuse_mentions_and_links() -> None:
    d = {"date": "2026-01-02", "overview": "@everyone 看这里 [点我](https://evil.example/x) discord.gg/abc",
         "news": [{"title": "<@&123456789012345678> 要闻", "url": "http://paper.people.com.cn/a.htm", "page": "01版",
                   "summary": "摘要 @here"}],
         "hot_topics": [{"rank": 1, "word": "话题", "heat": 1234567, "label": "社会", "sublabel": None}],
         "errors": [], "notes": []}
    text = " ".join(str(e.to_dict()) for e in digest_embeds(d))
    assert "@everyone" not in text and "@here" not in text and "<@&123456789012345678>" not in text
    assert "](https://evil" not in text and "discord.gg/abc" not in text
    assert "123.5万" in text
