"""Text utilities for the news jobs: sentence and clause splitting, boilerplate and
untrusted-line detection, character n-gram TF-IDF, and fact features.

Everything here is pure and offline. Sentences keep their offsets into the original text,
so anything built from them is a substring of the article: extractive output never
contains invented characters.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

TERMINATORS = "。！？!?"
CLOSERS = "”’」』）)》】\"'"
_OPEN_CLOSE = {"“": "”", "「": "」", "『": "』", "（": "）", "(": ")"}
_CLAUSE_MARKS = "，；：,;:、"
MAX_QUOTED = 220  # a quote still open after this many characters is unbalanced: split anyway
SHORT_TAIL = 8  # "……。”她说。": a tail this short after a closing quote stays with its sentence
_PUNCT = re.compile(r"[\s\u3000-\u303f\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"
                    r"!-/:-@\[-`{-~“”‘’—…·•、]+")


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str
    start: int  # offset in the original text: text == original[start:start + len(text)]
    index: int  # position among the kept sentences of the article
    para: int  # paragraph number (0-based, boilerplate paragraphs not counted)
    first_in_para: bool

    @property
    def end(self) -> int:
        return self.start + len(self.text)


# ---- boilerplate: bylines, editor lines, dates, captions ------------------------------------

_EDITOR = re.compile(
    r"^[（(【\[]?\s*(责任编辑|责编|编辑|校对|审核|审校|终审|监制|统筹|策划|主编|制图|美编|设计|排版|出品|来源|"
    r"数据来源|资料来源|图片来源|作者|文字|摄影|摄像|视频|图|文|记者|通讯员|实习生|本报记者|本报通讯员|"
    r"新华社记者|供图|图片|海报)\s*[:：/／|｜]\s*.{0,60}$")
_BYLINE = re.compile(
    r"^[（(【\[]?\s*(本报记者|本报通讯员|本报特约记者|本报驻.{1,8}记者|新华社记者|新华社发|中新社记者|"
    r"记者|通讯员|特约撰稿人|作者)[\s\u3000]*[\u4e00-\u9fa5·]{2,5}([\s\u3000、，,]+[\u4e00-\u9fa5·]{2,5})*"
    r"\s*[）)】\]]?$")
_CAPTION = re.compile(r"(新华社记者|本报记者|记者|通讯员)?\s*[\u4e00-\u9fa5·]{2,4}\s*(摄|摄影|供图|制图|绘)\s*[）)]?$")
_DATE_WORDS = re.compile(
    r"[\d０-９一二三四五六七八九十〇零]+|年|月|日|号|时|分|星期.|周.|第|版|人民日报|《|》|[（）()\[\]【】]|"
    r"Mon|Tue|Wed|Thu|Fri|Sat|Sun|[:：\-/.,，、\s\u3000]", re.I)
_PAGE_CHROME = re.compile(r"^(图片报道|返回目录|上一篇|下一篇|放大|缩小|默认|打印|分享到|点击查看|扫码|二维码|"
                          r"本版责编|版式设计|延伸阅读|相关阅读|相关链接|附件)")
_PHOTO = re.compile(r"^[（(]?(图为|上图|下图|左图|右图|图[①②③④⑤⑥⑦⑧⑨⑩\d]|图片[:：]|图[:：])")
_DATELINE = re.compile(
    r"^\s*(本报讯|本报电|本报[\u4e00-\u9fa5]{0,12}?\d{1,2}月\d{1,2}日电|新华社[\u4e00-\u9fa5]{0,12}?\d{1,2}月\d{1,2}日电|"
    r"中新社[\u4e00-\u9fa5]{0,12}?\d{1,2}月\d{1,2}日电|中新网[\u4e00-\u9fa5]{0,12}?\d{1,2}月\d{1,2}日电|"
    r"[\u4e00-\u9fa5]{2,12}?\d{1,2}月\d{1,2}日电)"
    r"\s*([（(【][^）)】]{0,40}[）)】])?\s*(——|—|－－|--|：|:|，)?\s*")
_BRACKET_LEAD = re.compile(r"^\s*【[^】]{1,30}】\s*")


def is_boilerplate(line: str) -> bool:
    """Bylines, editor lines, date-only lines, photo credits and page chrome: never summary material."""
    s = line.strip().strip("\u3000")
    if not s:
        return True
    if len(s) <= 80 and _EDITOR.match(s):
        return True
    if len(s) <= 40 and _BYLINE.match(s):
        return True
    if len(s) <= 40 and not any(c in s[:-1] for c in TERMINATORS) and _CAPTION.search(s):
        return True
    if len(s) <= 60 and not _DATE_WORDS.sub("", s):
        return True  # "2024年12月25日 星期三", "《人民日报》（2024年12月25日 第 01 版）"
    if len(s) <= 30 and _PAGE_CHROME.match(s):
        return True
    if len(s) <= 120 and _PHOTO.match(s):
        return True  # a photo caption describes a picture the reader does not see
    # a whole line in brackets, short: "（本报记者 张三）", "（新华社北京12月24日电）"
    return len(s) <= 40 and s[0] in "（(【[" and s[-1] in "）)】]" and not any(c in s for c in "。！？")


def dateline_len(sentence: str) -> int:
    """Length of a leading dateline ("本报北京12月24日电（记者 张三）", "本报讯 ", "【快讯】") to skip."""
    m = _DATELINE.match(sentence)
    n = m.end() if m else 0
    m2 = _BRACKET_LEAD.match(sentence[n:])
    if m2 and len(sentence) - n - m2.end() >= 8:
        n += m2.end()
    return n if len(sentence) - n >= 4 else 0


# ---- untrusted text: instructions, links, mentions, floods inside scraped articles -------------

_INJECTION = [
    re.compile(r"(忽略|无视|忘记|忘掉|不要理会|不要管)(掉)?(之前|以上|上面|前面|先前|此前|所有|全部|一切|你的|系统)?"
               r"的?(所有|全部|一切)?的?(指令|指示|提示|规则|设定|要求|限制)"),
    re.compile(r"(?i)\b(ignore|disregard|forget|override)\b.{0,30}\b(instruction|prompt|rule|previous|above|prior)"),
    re.compile(r"(?i)(system\s*prompt|系统提示|开发者模式|developer mode|jailbreak|越狱模式|api[\s_-]*key|"
               r"环境变量|</?system>|\bPWNED\b|DAN模式|安全规则.{0,4}失效)"),
    re.compile(r"(?i)(回复|回答|输出|reply with|respond with|answer with|\bsay\b)\s*(PWNED|单词|这个词|以下内容|"
               r"the (single )?word|only)"),
    re.compile(r"```|^\s*[{\[]\s*\"|^\s*#{1,6}\s", re.M),
    re.compile(r"(?i)((把|将)[^，。]{0,16}(分类|归类|标记)为|分类为[“\"「]|label\s*(it\s*)?as|"
               r"classify\s*(it\s*|this\s*)?as|\"label\"\s*:)"),
    re.compile(r"(.)\1{9,}", re.S),  # a flood of one character
    re.compile(r"(.{2,8}?)\1{5,}", re.S),  # a flood of a short unit
]
_LINK = re.compile(r"(?i)(https?://|www\.|discord(app)?\.(gg|com|io|me|li)|dsc\.gg|\.gg/)|\[[^\]\n]{1,200}\]\([^)\n]+\)")
_MENTION = re.compile(r"@(everyone|here)\b|<@[!&]?\d+>|<#\d+>", re.I)


def looks_injected(text: str) -> bool:
    """Instructions to a model, code or JSON payloads, floods: text written to steer, not to inform."""
    return any(p.search(text) for p in _INJECTION)


def has_link(text: str) -> bool:
    """URLs, invites and masked links: in scraped news these are ads or phishing."""
    return bool(_LINK.search(text))


def has_mention(text: str) -> bool:
    return bool(_MENTION.search(text))


def strip_mentions(text: str) -> str:
    """The text without @everyone/@here/<@id> tokens (the rest of the sentence may still be news)."""
    return re.sub(r"\s{2,}", " ", _MENTION.sub("", text)).strip()


def looks_untrusted(text: str) -> bool:
    """Text that tries to steer a model, ping people, advertise links or flood: not summary material."""
    return looks_injected(text) or has_link(text) or has_mention(text)


def strip_untrusted_lines(text: str) -> str:
    """The article without lines and sentences that look like injected instructions or spam.

    Used before text is sent to an LLM (defence in depth: the prompt also says the article is
    data) and as the reference an LLM summary must be supported by.
    """
    out: list[str] = []
    for para in text.splitlines():
        sents = split_sentences(para, skip_boilerplate=False, strip_datelines=False)
        if any(looks_injected(s.text) for s in sents):
            continue  # the sentences around an injected one are usually part of it
        kept = [strip_mentions(s.text) for s in sents if not has_link(s.text)]
        kept = [k for k in kept if k]
        if kept:
            out.append("".join(kept))
    return "\n".join(out)


# ---- sentences and clauses -------------------------------------------------------------------

def _raw_sentences(para: str) -> Iterable[tuple[int, int]]:
    """(start, end) spans of sentences in one paragraph; quotes and brackets are respected."""
    n = len(para)
    start = 0
    i = 0
    stack: list[str] = []
    while i < n:
        c = para[i]
        quote_closed = False
        if c in _OPEN_CLOSE:
            stack.append(_OPEN_CLOSE[c])
        elif stack and c == stack[-1]:
            stack.pop()
            # "……完工。”": the quote ends a sentence when its last sentence ended inside it
            quote_closed = not stack and i > 0 and (para[i - 1] in TERMINATORS or para[i - 1] == "…")
        elif c in "”」』）)" and c in stack:
            while stack and stack.pop() != c:  # mismatched nesting: unwind to the matching opener
                pass
        is_term = c in TERMINATORS or (c == "…" and i + 1 < n and para[i + 1] == "…") or (
            c == "." and i + 1 < n and para[i + 1] in " \t" and i > 0 and not para[i - 1].isdigit())
        if quote_closed or (is_term and (not stack or i - start > MAX_QUOTED)):
            j = i + 1
            while j < n and (para[j] in TERMINATORS or para[j] == "…"):
                j += 1
            closed = quote_closed
            while j < n and para[j] in CLOSERS:
                closed = True
                j += 1
            if closed:
                # "……。”她说。" / "……。”他告诉记者。": keep a short attribution with its quote
                k = j
                while k < n and para[k] not in TERMINATORS and k - j <= SHORT_TAIL:
                    k += 1
                if j < k < n and k - j <= SHORT_TAIL and para[k] in TERMINATORS:
                    j = k + 1
                    while j < n and para[j] in CLOSERS:
                        j += 1
            yield start, j
            start = j
            stack.clear()
            i = j
            continue
        i += 1
    if start < n:
        yield start, n


def split_sentences(text: str, *, skip_boilerplate: bool = True, strip_datelines: bool = True) -> list[Sentence]:
    """Whole sentences of `text`, each an exact substring with its offset.

    Paragraphs are lines. Boilerplate lines and boilerplate sentences (bylines, editor lines,
    date-only lines) are dropped; a leading dateline ("本报北京12月24日电（记者 张三）——") is
    cut off the sentence it starts, which keeps the rest an exact substring.
    """
    out: list[Sentence] = []
    offset = 0
    para_no = -1
    for line in text.splitlines(keepends=True):
        line_start = offset
        offset += len(line)
        body = line.rstrip("\r\n")
        if not body.strip():
            continue
        if skip_boilerplate and is_boilerplate(body):
            continue
        para_no += 1
        first = True
        for a, b in _raw_sentences(body):
            raw = body[a:b]
            lead = len(raw) - len(raw.lstrip(" \t\u3000\xa0"))
            s = raw.strip(" \t\u3000\xa0")
            if not s:
                continue
            a += lead
            if skip_boilerplate and is_boilerplate(s):
                continue
            if strip_datelines and first:
                cut = dateline_len(s)
                if cut:
                    rest = s[cut:]
                    a += len(s) - len(rest.lstrip())
                    s = rest.strip()
            if not s or not _PUNCT.sub("", s):
                continue
            out.append(Sentence(s, line_start + a, len(out), para_no, first))
            first = False
    return out


def clauses(sentence: str) -> list[tuple[int, int]]:
    """(start, end) spans of the clauses of a sentence, cut after ，；： (the mark stays with its clause)."""
    spans: list[tuple[int, int]] = []
    start = 0
    depth = 0
    for i, c in enumerate(sentence):
        if c in _OPEN_CLOSE:
            depth += 1
        elif c in _OPEN_CLOSE.values() and depth:
            depth -= 1
        elif c in _CLAUSE_MARKS and depth == 0:
            spans.append((start, i + 1))
            start = i + 1
    if start < len(sentence):
        spans.append((start, len(sentence)))
    return [(a, b) for a, b in spans if sentence[a:b].strip()]


def strip_punct(text: str) -> str:
    """Text without punctuation and spaces (for ROUGE and for support checks)."""
    return _PUNCT.sub("", text)


def trim_clause_end(text: str) -> str:
    """A clause span without its trailing ，；： (and spaces), so it reads as a phrase."""
    return text.rstrip(" \u3000" + _CLAUSE_MARKS + "、")


# ---- TF-IDF over character n-grams and TextRank ------------------------------------------------

def char_ngrams(text: str, n_values: tuple[int, ...] = (1, 2)) -> Counter[str]:
    s = strip_punct(text).lower()
    grams: Counter[str] = Counter()
    for n in n_values:
        grams.update(s[i:i + n] for i in range(len(s) - n + 1))
    return grams


class CharTfidf:
    """Sublinear TF-IDF over character n-grams, idf fitted on a set of texts (one article's sentences)."""

    def __init__(self, texts: list[str], n_values: tuple[int, ...] = (1, 2)) -> None:
        self.n_values = n_values
        bags = [char_ngrams(t, n_values) for t in texts]
        df: Counter[str] = Counter()
        for bag in bags:
            df.update(bag.keys())
        self.vocab = {g: i for i, g in enumerate(df)}
        n_docs = len(texts)
        self.idf = np.array([math.log((1 + n_docs) / (1 + df[g])) + 1 for g in self.vocab], dtype=np.float32)
        self.fitted = self._rows(bags)

    def _rows(self, bags: list[Counter[str]]) -> np.ndarray:
        m = np.zeros((len(bags), len(self.vocab)), dtype=np.float32)
        for r, bag in enumerate(bags):
            for g, tf in bag.items():
                j = self.vocab.get(g)
                if j is not None:
                    m[r, j] = (1 + math.log(tf)) * self.idf[j]
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        norms[norms == 0] = 1
        return m / norms

    def transform(self, texts: list[str]) -> np.ndarray:
        return self._rows([char_ngrams(t, self.n_values) for t in texts])

    def centroid(self) -> np.ndarray:
        c = self.fitted.sum(axis=0)
        n = float(np.linalg.norm(c))
        return c / n if n else c


def tfidf_matrix(texts: list[str], n_values: tuple[int, ...] = (1, 2)) -> np.ndarray:
    """L2-normalised sublinear TF-IDF rows over character n-grams (idf from these texts)."""
    return CharTfidf(texts, n_values).fitted


def textrank(sim: np.ndarray, damping: float = 0.85, iters: int = 50) -> np.ndarray:
    """PageRank over a similarity matrix (self-loops removed); scores sum to 1."""
    n = sim.shape[0]
    if n == 0:
        return np.zeros(0)
    w = sim.copy().astype(np.float64)
    np.fill_diagonal(w, 0)
    w[w < 0] = 0
    out = w.sum(axis=1, keepdims=True)
    trans = np.where(out > 0, w / np.where(out == 0, 1, out), 1.0 / n)
    r = np.full(n, 1.0 / n)
    for _ in range(iters):
        nxt = (1 - damping) / n + damping * trans.T @ r
        if np.abs(nxt - r).sum() < 1e-8:
            r = nxt
            break
        r = nxt
    return r / r.sum()


# ---- fact features: numbers, names, actions -------------------------------------------------
# Names by regular expressions (organisation and place suffixes, titles before a person's name),
# not jieba POS tags: posseg ran at ~12k characters/s here plus ~3 s to load, too slow for a
# 140-article day inside the digest's time budget; the patterns cost microseconds.

_NUM_UNIT = re.compile(
    r"(\d+(?:[.,]\d+)*|[一二三四五六七八九十两百千万亿]+)\s*"
    r"(%|％|个百分点|万亿|亿|万|千|百|元|美元|吨|亩|公里|千米|米|平方米|人次|人|户|个|家|座|项|种|台|辆|件|倍|"
    r"瓦时|千瓦|兆瓦|吉瓦|度|次|场|所|条|名|位|只|株|架|艘|枚|年|月|日|天|小时|分钟|岁|成)")
_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_ORG = re.compile(r"[\u4e00-\u9fa5]{2,14}?(部|局|委员会|委|院|研究所|所|公司|集团|大学|学院|中心|协会|银行|法院|"
                  r"检察院|政府|厅|署|办公室|联合会|组委会|基金会|医院|学校|联盟|交易所)")
_PLACE = re.compile(r"[\u4e00-\u9fa5]{1,6}?(省|市|县|区|州|镇|乡|村|自治区)(?![长委民])")
_PERSON = re.compile(r"(研究员|教授|院士|负责人|局长|部长|厅长|主任|书记|市长|省长|县长|总经理|董事长|创始人|"
                     r"发言人|总裁|校长|院长|所长|记者|果农|农户|村民|患者|市民)[\u4e00-\u9fa5]{2,3}(?=[，。、说表介告：:（(]|$)")
_ACTION = re.compile(r"(发布|宣布|印发|出台|启动|开通|开幕|召开|举行|签署|通过|批准|实施|上线|发射|建成|投产|"
                     r"研制|突破|达到|增长|下降|增加|减少|提高|降低|超过|突破|实现|完成|夺得|获得|当选|成立|"
                     r"公布|推出|扩大|提升|首次|首个|创下|新增|同比|环比)")
_WEAK_START = re.compile(r"^(此外|另外|同时|但是|但|而|因此|所以|其中|对此|为此|这|该|他|她|它|他们|这些|那|"
                         r"与此同时|不过|然而|当然|可见|总之|据悉|另据)")
_OPINION = re.compile(r"(专家认为|业内人士认为|业内专家|有关专家|专家提醒|提醒|建议|认为|希望|呼吁|表示|指出|坦言|"
                      r"告诉记者|说[。！”]|记者了解到)")
_BACKGROUND = re.compile(r"^(近年来|近些年|多年来|长期以来|一直以来|随着|当前|目前|如今|过去|以前|曾经|在.{1,12}看来)")


def fact_score(s: str) -> float:
    """How much of what a reader needs the sentence carries: numbers, names and a main action."""
    nums = len(_NUM_UNIT.findall(s)) + 0.3 * max(0, len(_DIGITS.findall(s)) - len(_NUM_UNIT.findall(s)))
    names = len(_ORG.findall(s)) + 0.5 * len(_PLACE.findall(s)) + len(_PERSON.findall(s))
    action = 1.0 if _ACTION.search(s) else 0.0
    return min(nums, 4) * 0.5 + min(names, 3) * 0.4 + action * 0.6


def style_penalty(s: str, first_in_para: bool) -> float:
    """Sentences that lean on context or carry opinion rather than facts read badly alone."""
    p = 0.0
    if _WEAK_START.match(s):
        p += 0.6
    if s.startswith(("“", "「", '"')):
        p += 0.5
    if _OPINION.search(s):
        p += 0.25
    if _BACKGROUND.match(s):
        p += 0.3
    if s.rstrip("”’」』）)").endswith(("？", "?")):
        p += 0.8
    if len(strip_punct(s)) < 8:
        p += 1.0
    return p


# ---- batch input (CLI contract: JSONL rows or plain lines) ----------------------------------------

def parse_rows(text: str) -> list[dict[str, Any] | str]:
    """Rows of a batch command's input: one JSON object per line, or a plain line of text.

    A line that starts with `{` must be valid JSON (ValueError names the line); blank lines are
    skipped; a JSON string literal is taken as its text; any other line is plain text.
    """
    rows: list[dict[str, Any] | str] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"第 {n} 行不是合法的 JSON / line {n} is not valid JSON: {e.msg}") from None
        elif line.startswith('"'):
            try:  # a JSON string literal, or plain text that happens to open with a quote
                obj = json.loads(line)
                rows.append(obj if isinstance(obj, str) else line)
            except json.JSONDecodeError:
                rows.append(line)
        else:
            rows.append(line)
    return rows
