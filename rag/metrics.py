"""Metric arithmetic, pure: no models, no I/O. Checked against the reference scripts'
definitions in tests/test_metrics.py.

- SQuAD EM/F1: the official SQuAD v2 normalisation (lower-case, drop punctuation and
  English articles, collapse spaces), max over gold answers.
- Korean: KorQuAD v1's official script scores F1 over characters (after the same
  normalisation minus English articles), because Korean words carry particles.
- Retrieval: nDCG@k with binary or graded gains, recall@k, MRR@k."""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter
from collections.abc import Sequence

from rag.text import has_hangul

_PUNCT = set(string.punctuation) | set("‘’“”…·「」『』《》〈〉")


def normalize_answer(s: str, korean: bool = False) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    if not korean:
        s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _tokens(s: str, korean: bool) -> list[str]:
    norm = normalize_answer(s, korean)
    if korean:
        return [ch for tok in norm.split() for ch in tok]
    return norm.split()


def f1_single(prediction: str, gold: str) -> float:
    korean = has_hangul(gold)
    p, g = _tokens(prediction, korean), _tokens(gold, korean)
    if not p or not g:
        return float(p == g)
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_single(prediction: str, gold: str) -> float:
    korean = has_hangul(gold)
    return float(normalize_answer(prediction, korean) == normalize_answer(gold, korean))


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    return max((f1_single(prediction, g) for g in golds), default=0.0)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    return max((exact_single(prediction, g) for g in golds), default=0.0)


def ndcg_at_k(ranked: Sequence[str], relevance: dict[str, float], k: int = 10) -> float:
    dcg = sum(relevance.get(d, 0.0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevance.values(), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    if not relevant:
        return 0.0
    return len(relevant & set(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if d in relevant:
            return 1.0 / (i + 1)
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def abstention_metrics(abstained: Sequence[bool], answerable: Sequence[bool]) -> dict[str, float]:
    """Abstention as a classifier whose positive class is 'unanswerable'."""
    tp = sum(a and not ans for a, ans in zip(abstained, answerable))
    n_abst = sum(abstained)
    n_unans = sum(not ans for ans in answerable)
    recall = tp / n_unans if n_unans else 0.0
    return {
        "abstain_precision": tp / n_abst if n_abst else 0.0,
        "abstain_recall": recall,
        "answered_unanswerable_rate": 1.0 - recall if n_unans else 0.0,
        "abstained_answerable_rate": (n_abst - tp) / (len(answerable) - n_unans) if len(answerable) > n_unans else 0.0,
    }


def distinct(seq: Sequence[str]) -> list[str]:
    """First occurrence order: chunk-level rankings become document-level rankings."""
    seen: set[str] = set()
    out = []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


RIGHT_F1 = 0.5  # an answer with F1 >= 0.5 against a gold answer counts as right


def answer_metrics(levels: Sequence[str], answerable: Sequence[bool], f1s: Sequence[float],
                   resamples: int = 1000, seed: int = 0) -> dict:
    """What a user gets, per answer level (answered / caveat / abstained; a caveat answer is
    shown, so it counts as answered): `coverage`, the share of answerable questions answered;
    `answer_precision`, the share of answers that are right (F1 >= RIGHT_F1; any answer to an
    unanswerable question is wrong); the same per shown level; each with a 95% bootstrap
    interval over questions (`*_ci95`), because a few hundred questions leave a wide margin."""
    items = list(zip(levels, answerable, f1s))

    def point(sample) -> dict:
        shown = [(lv, a, f) for lv, a, f in sample if lv != "abstained"]
        n_ans = sum(1 for _, a, _ in sample if a)
        out = {"coverage": sum(1 for _, a, _ in shown if a) / n_ans if n_ans else 0.0,
               "answer_precision": mean([float(a and f >= RIGHT_F1) for _, a, f in shown])}
        for level in ("answered", "caveat"):
            at = [(a, f) for lv, a, f in shown if lv == level]
            out[f"answer_precision_{level}"] = mean([float(a and f >= RIGHT_F1) for a, f in at]) if at else None
            out[f"share_{level}"] = len(at) / len(sample) if sample else 0.0
        return out

    result = point(items)
    if items and resamples:
        rng = random.Random(seed)
        draws = [point([items[rng.randrange(len(items))] for _ in items]) for _ in range(resamples)]
        for key in ("coverage", "answer_precision", "answer_precision_answered", "answer_precision_caveat"):
            values = [d[key] for d in draws if d[key] is not None]
            if values:
                result[f"{key}_ci95"] = [round(percentile(values, 2.5), 4), round(percentile(values, 97.5), 4)]
    return result


def coverage_curve(scores: Sequence[float], answerable: Sequence[bool], right: Sequence[bool], n_answerable: int,
                   bars: Sequence[float] = tuple(i / 10 for i in range(10))) -> list[dict]:
    """The risk-coverage trade-off of one confidence score as a table: answering only where the
    score >= bar, the `coverage` (answerable questions answered) and `answer_precision` (answers
    right) at each bar. One entry per candidate answer in scores / answerable / right; questions
    without a candidate are abstentions at every bar and count only in n_answerable."""
    out = []
    for bar in bars:
        shown = [(a, r) for s, a, r in zip(scores, answerable, right) if s >= bar]
        out.append({"bar": round(bar, 4), "answers": len(shown),
                    "coverage": round(sum(1 for a, _ in shown if a) / n_answerable, 4) if n_answerable else 0.0,
                    "answer_precision": round(mean([float(r) for _, r in shown]), 4) if shown else None})
    return out
