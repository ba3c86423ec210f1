"""Summarisation benchmark: character ROUGE on LCSTS dev and key facts kept on full articles.

    .venv/bin/python bench/summarize.py [--max-chars 30] [--long-max-chars 200]

1. ../shared/data/summaries-dev.jsonl (300 short Weibo news posts with headline-style
   references; research use only, read in place, never copied): character ROUGE-1/2/L F1,
   punctuation and spaces stripped, for LEAD-1 (the whole first sentence), LEAD-1 cut to
   `--max-chars` characters, and the offline extractive summariser at `--max-chars`.
2. bench/data/articles_eval.jsonl (12 full news articles written for this project, each
   with its `key_facts`): the fraction of key facts kept verbatim by the summariser at
   `--long-max-chars` against the lead sentences that fit in the same budget.

Every figure is printed as a `name: value` line on stdout; notes go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobs.summarize import summarize  # noqa: E402
from jobs.text import split_sentences, strip_punct  # noqa: E402

DEV = ROOT.parent / "shared" / "data" / "summaries-dev.jsonl"
ARTICLES = ROOT / "bench" / "data" / "articles_eval.jsonl"


def out(name: str, value: object) -> None:
    if isinstance(value, float):
        value = f"{value:.4f}"
    print(f"{name}: {value}", flush=True)


def err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- character ROUGE ------------------------------------------------------------------------

def _ngrams(s: str, n: int) -> dict[str, int]:
    grams: dict[str, int] = {}
    for i in range(len(s) - n + 1):
        g = s[i:i + n]
        grams[g] = grams.get(g, 0) + 1
    return grams


def _f1(overlap: int, cand: int, ref: int) -> float:
    if overlap == 0 or cand == 0 or ref == 0:
        return 0.0
    p, r = overlap / cand, overlap / ref
    return 2 * p * r / (p + r)


def rouge_n(cand: str, ref: str, n: int) -> float:
    c, r = _ngrams(cand, n), _ngrams(ref, n)
    overlap = sum(min(v, r.get(g, 0)) for g, v in c.items())
    return _f1(overlap, sum(c.values()), sum(r.values()))


def lcs(a: str, b: str) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if ca == cb else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(cand: str, ref: str) -> float:
    return _f1(lcs(cand, ref), len(cand), len(ref))


def rouge(cand: str, ref: str) -> tuple[float, float, float]:
    c, r = strip_punct(cand), strip_punct(ref)
    return rouge_n(c, r, 1), rouge_n(c, r, 2), rouge_l(c, r)


# ---- baselines -----------------------------------------------------------------------------

def lead1(article: str) -> str:
    sents = split_sentences(article, skip_boilerplate=False, strip_datelines=False)
    return sents[0].text if sents else article


def lead_fit(article: str, max_chars: int) -> str:
    """The lead sentences, in order, while they fit in `max_chars`."""
    outp = ""
    for s in split_sentences(article):
        if len(outp) + len(s.text) > max_chars:
            break
        outp += s.text
    return outp


def bench_rouge(max_chars: int) -> None:
    if not DEV.exists():
        err(f"skip ROUGE: {DEV} not found")
        return
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    systems = {
        "lead1": lambda a: lead1(a),
        f"lead1_cut{max_chars}": lambda a: lead1(a)[:max_chars],
        f"ours{max_chars}": lambda a: summarize(a, max_chars),
    }
    totals: dict[str, list[float]] = {k: [0.0, 0.0, 0.0] for k in systems}
    lengths: dict[str, int] = dict.fromkeys(systems, 0)
    t_ours = 0.0
    for row in rows:
        for name, fn in systems.items():
            t0 = time.perf_counter()
            cand = fn(row["article"])
            if name.startswith("ours"):
                t_ours += time.perf_counter() - t0
                assert len(cand) <= max_chars, (cand, max_chars)
            lengths[name] += len(cand)
            for k, v in enumerate(rouge(cand, row["summary"])):
                totals[name][k] += v
    n = len(rows)
    out("rouge.rows", n)
    for name in systems:
        r1, r2, rl = (100 * v / n for v in totals[name])
        out(f"rouge.{name}.r1", round(r1, 2))
        out(f"rouge.{name}.r2", round(r2, 2))
        out(f"rouge.{name}.rl", round(rl, 2))
        out(f"rouge.{name}.mean_chars", round(lengths[name] / n, 1))
    ours = totals[f"ours{max_chars}"][2]
    out(f"rouge.ours{max_chars}_vs_lead1.rl_ratio", round(ours / max(1e-9, totals["lead1"][2]), 3))
    out(f"rouge.ours{max_chars}_vs_lead1_cut.rl_ratio",
        round(ours / max(1e-9, totals[f"lead1_cut{max_chars}"][2]), 3))
    out("rouge.ours_ms_per_article", round(1000 * t_ours / n, 2))
    beats = all(totals[f"ours{max_chars}"][k] > totals[b][k] for b in ("lead1", f"lead1_cut{max_chars}")
                for k in range(3))
    out("rouge.target_beats_both_leads", beats)


def bench_key_facts(max_chars: int) -> None:
    rows = [json.loads(line) for line in ARTICLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept_ours = kept_lead = total = 0
    for row in rows:
        ours = summarize(row["article"], max_chars, title=row.get("title"))
        lead = lead_fit(row["article"], max_chars)
        assert len(ours) <= max_chars
        facts = row["key_facts"]
        total += len(facts)
        kept_ours += sum(f in ours for f in facts)
        kept_lead += sum(f in lead for f in facts)
        err(f"[{row['title']}] ours {sum(f in ours for f in facts)}/{len(facts)}, "
            f"lead {sum(f in lead for f in facts)}/{len(facts)}\n  ours: {ours}\n  lead: {lead}")
    out("facts.articles", len(rows))
    out("facts.key_facts", total)
    out(f"facts.ours{max_chars}.kept", round(kept_ours / total, 3))
    out(f"facts.lead_fit{max_chars}.kept", round(kept_lead / total, 3))
    out("facts.target_ours_keeps_more", kept_ours > kept_lead)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-chars", type=int, default=30)
    ap.add_argument("--long-max-chars", type=int, default=200)
    args = ap.parse_args()
    bench_rouge(args.max_chars)
    bench_key_facts(args.long_max_chars)


if __name__ == "__main__":
    main()
