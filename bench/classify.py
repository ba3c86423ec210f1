"""Classification benchmark: zero-shot prototypes and the trained model, offline.

    .venv/bin/python bench/classify.py [--folds 5] [--seed 13] [--top-confusions 8]

1. ../shared/data/headlines-train.jsonl (TNEWS, 2,951 titles, 15 labels; research use only,
   read in place, never copied into the package): stratified k-fold cross-validation
   (seeded). Zero-shot is scored on each held-out fold (it learns nothing from the others);
   the trained model (numpy logistic regression blended with zero-shot, as shipped) is
   fitted on the other folds. Accuracy, macro-F1 and the most frequent confusions.
2. bench/data/headlines_eval.jsonl (150 clean headlines) and bench/data/hot_topics_eval.jsonl
   (120 hot-search topics with sublabels), written for this project: zero-shot accuracy,
   macro-F1, and sublabel accuracy on topics whose label is right.

TNEWS title embeddings are cached in .bench-cache/ (gitignored), keyed by the titles and the
embedder, so reruns only cost the fitting. Figures go to stdout as `name: value` lines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobs.classify import Classifier, clean_text  # noqa: E402

TNEWS = ROOT.parent / "shared" / "data" / "headlines-train.jsonl"
HEADLINES = ROOT / "bench" / "data" / "headlines_eval.jsonl"
TOPICS = ROOT / "bench" / "data" / "hot_topics_eval.jsonl"
CACHE = ROOT / ".bench-cache"

TARGETS = {"tnews.zero_shot.accuracy": 0.50, "tnews.trained.accuracy": 0.57,
           "headlines_eval.zero_shot.accuracy": 0.85, "hot_topics_eval.zero_shot.accuracy": 0.75}


def out(name: str, value: object) -> None:
    if isinstance(value, float):
        value = f"{value:.4f}"
    print(f"{name}: {value}", flush=True)


def err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def embed_cached(clf: Classifier, texts: list[str], tag: str) -> np.ndarray:
    key = hashlib.sha256(("\n".join(texts) + clf.embedder.name).encode()).hexdigest()[:16]
    path = CACHE / f"{tag}-{key}.npy"
    if path.exists():
        return np.load(path)
    t0 = time.perf_counter()
    X = clf.embed(texts)
    err(f"embedded {len(texts)} {tag} texts in {time.perf_counter() - t0:.1f} s")
    CACHE.mkdir(exist_ok=True)
    np.save(path, X)
    return X


def macro_f1(y: np.ndarray, p: np.ndarray, k: int) -> float:
    f1s = []
    for c in range(k):
        tp = int(((p == c) & (y == c)).sum())
        fp = int(((p == c) & (y != c)).sum())
        fn = int(((p != c) & (y == c)).sum())
        if tp + fp + fn == 0:
            continue
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            folds[j % k].append(int(i))
    return [np.array(sorted(f)) for f in folds]


def predict(clf: Classifier, X: np.ndarray, texts: list[str], topics: bool = False) -> tuple[np.ndarray, list]:
    res = clf.classify_vectors(X, texts, [topics] * len(texts))
    return np.array([clf.labels.index(r.label) for r in res]), res


def confusions(names: list[str], y: np.ndarray, p: np.ndarray, top: int) -> str:
    pairs = Counter((names[a], names[b]) for a, b in zip(y, p, strict=True) if a != b)
    return ", ".join(f"{a}→{b} {n}" for (a, b), n in pairs.most_common(top))


def bench_tnews(clf: Classifier, folds_n: int, seed: int, top: int,
                quiet: bool = False) -> tuple[float, float] | None:
    """(zero-shot, trained) mean accuracy over the folds; figures printed unless quiet."""
    if not TNEWS.exists():
        err(f"skip TNEWS: {TNEWS} not found")
        return None
    rows = read_jsonl(TNEWS)
    names = clf.labels.names
    texts = [clean_text(r["title"]) for r in rows]
    y = np.array([names.index(r["label"]) for r in rows])
    X = embed_cached(clf, texts, "tnews")
    folds = stratified_folds(y, folds_n, seed)
    k = len(names)
    zs_acc, zs_f1, tr_acc, tr_f1, lr_acc = [], [], [], [], []
    nll_zs: list[float] = []
    nll_tr: list[float] = []
    zs_all = np.zeros_like(y)
    tr_all = np.zeros_like(y)
    t_fit = 0.0
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(len(y)), test)
        tt = [texts[i] for i in test]
        clf.forget_model()
        p, res = predict(clf, X[test], tt)
        nll_zs.extend(-np.log(max(1e-12, r.scores[names[c]])) for r, c in zip(res, y[test], strict=True))
        zs_all[test] = p
        zs_acc.append(float((p == y[test]).mean()))
        zs_f1.append(macro_f1(y[test], p, k))
        t0 = time.perf_counter()
        model = clf.fit(X[train], y[train], seed=seed)
        t_fit += time.perf_counter() - t0
        p, res = predict(clf, X[test], tt)
        nll_tr.extend(-np.log(max(1e-12, r.scores[names[c]])) for r, c in zip(res, y[test], strict=True))
        tr_all[test] = p
        tr_acc.append(float((p == y[test]).mean()))
        tr_f1.append(macro_f1(y[test], p, k))
        lr_acc.append(float((np.argmax(model.lr_log_proba(X[test]), axis=1) == y[test]).mean()))
        err(f"fold {f + 1}/{folds_n}: zero-shot {zs_acc[-1]:.3f}, trained {tr_acc[-1]:.3f}, LR alone {lr_acc[-1]:.3f}")
    clf.forget_model()
    if quiet:
        err(f"seed {seed}: zero-shot {np.mean(zs_acc):.4f}, trained {np.mean(tr_acc):.4f}")
        return float(np.mean(zs_acc)), float(np.mean(tr_acc))
    out("tnews.rows", len(y))
    out("tnews.folds", folds_n)
    out("tnews.zero_shot.accuracy", float(np.mean(zs_acc)))
    out("tnews.zero_shot.macro_f1", float(np.mean(zs_f1)))
    out("tnews.trained.accuracy", float(np.mean(tr_acc)))
    out("tnews.trained.accuracy_min_fold", float(np.min(tr_acc)))
    out("tnews.trained.macro_f1", float(np.mean(tr_f1)))
    out("tnews.trained_lr_only.accuracy", float(np.mean(lr_acc)))
    out("tnews.trained.fit_s_per_fold", round(t_fit / folds_n, 2))
    out("tnews.zero_shot.nll", float(np.mean(nll_zs)))
    out("tnews.trained.nll", float(np.mean(nll_tr)))
    out("tnews.zero_shot.top_confusions", confusions(names, y, zs_all, top))
    out("tnews.trained.top_confusions", confusions(names, y, tr_all, top))
    per_label = {n: float((tr_all[y == c] == c).mean()) for c, n in enumerate(names)}
    out("tnews.trained.recall_by_label", ", ".join(f"{n} {v:.2f}" for n, v in per_label.items()))
    return float(np.mean(zs_acc)), float(np.mean(tr_acc))


def bench_clean(clf: Classifier) -> None:
    names = clf.labels.names
    k = len(names)
    clf.forget_model()
    rows = read_jsonl(HEADLINES)
    texts = [clean_text(r["title"]) for r in rows]
    y = np.array([names.index(r["label"]) for r in rows])
    t0 = time.perf_counter()
    X = clf.embed(texts)
    ms = 1000 * (time.perf_counter() - t0) / len(texts)
    p, _ = predict(clf, X, texts)
    out("headlines_eval.rows", len(rows))
    out("headlines_eval.zero_shot.accuracy", float((p == y).mean()))
    out("headlines_eval.zero_shot.macro_f1", macro_f1(y, p, k))
    out("headlines_eval.zero_shot.top_confusions", confusions(names, y, p, 6))
    out("headlines_eval.embed_ms_per_title", round(ms, 1))

    rows = read_jsonl(TOPICS)
    texts = [clean_text(r["word"]) for r in rows]
    y = np.array([names.index(r["label"]) for r in rows])
    Xt = clf.embed(texts)
    p, res = predict(clf, Xt, texts, topics=True)
    right = p == y
    sub_ok = [r.sublabel == row["sublabel"] for r, row, ok in zip(res, rows, right, strict=True) if ok]
    out("hot_topics_eval.rows", len(rows))
    out("hot_topics_eval.zero_shot.accuracy", float(right.mean()))
    out("hot_topics_eval.zero_shot.macro_f1", macro_f1(y, p, k))
    out("hot_topics_eval.sublabel_accuracy_when_label_right", float(np.mean(sub_ok)) if sub_ok else 0.0)
    out("hot_topics_eval.zero_shot.top_confusions", confusions(names, y, p, 6))
    # the shipped blend must not spoil clean text: trained on all of TNEWS, scored on both sets
    if TNEWS.exists():
        trows = read_jsonl(TNEWS)
        ttexts = [clean_text(r["title"]) for r in trows]
        clf.fit(embed_cached(clf, ttexts, "tnews"), np.array([names.index(r["label"]) for r in trows]))
        hp, _ = predict(clf, X, [clean_text(r["title"]) for r in read_jsonl(HEADLINES)])
        hy = np.array([names.index(r["label"]) for r in read_jsonl(HEADLINES)])
        tp, _ = predict(clf, Xt, texts, topics=True)
        out("headlines_eval.trained_on_tnews.accuracy", float((hp == hy).mean()))
        out("hot_topics_eval.trained_on_tnews.accuracy", float((tp == y).mean()))
        clf.forget_model()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--top-confusions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1, help="repeat the TNEWS CV with seeds seed, seed+1, ...")
    args = ap.parse_args()
    # a data dir under .bench-cache: prototype vectors are cached there between runs
    clf = Classifier(CACHE / "data", use_trained=False)
    t0 = time.perf_counter()
    clf.prototypes()
    out("prototypes_build_s", round(time.perf_counter() - t0, 2))
    bench_clean(clf)
    accs = [bench_tnews(clf, args.folds, args.seed, args.top_confusions)]
    for r in range(1, args.repeats):
        err(f"repeat {r + 1}/{args.repeats} with seed {args.seed + r}")
        accs.append(bench_tnews(clf, args.folds, args.seed + r, args.top_confusions, quiet=True))
    if args.repeats > 1 and all(a is not None for a in accs):
        out("tnews.trained.accuracy_over_seeds", float(np.mean([a[1] for a in accs])))
        out("tnews.zero_shot.accuracy_over_seeds", float(np.mean([a[0] for a in accs])))


if __name__ == "__main__":
    main()
