"""Fitting the answer confidence of rag.answer.confidence (`rag train confidence`) on the records
of `rag eval qa` run over train questions, and the ladder's bars on it.

Protocol: folds grouped by article (a record's `title`), so no article's questions are both
fitted and scored. For each fold the model and its bars are fitted on the other articles and
applied to this one; the pooled out-of-fold levels are the report (coverage, answer precision,
per level, and the risk-coverage curve). The shipped model is then fitted on every article."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.answer.confidence import (CAVEAT_PRECISION, FEATURES, TARGET_PRECISION, Confidence, candidate, features,
                                   is_right)
from rag.metrics import answer_metrics, coverage_curve, f1_score
from rag.text import is_korean

MIN_ANSWERS = 20  # a bar needs at least this many train answers above it to be trusted


def rows(records: Sequence[dict], reader_name: str) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """(features, right, article, record index) of every record with a candidate answer."""
    x, y, groups, idx = [], [], [], []
    for i, r in enumerate(records):
        answer = candidate(r)
        if not answer:
            continue  # no answer to rate
        o, inputs = r["outputs"], r["inputs"]
        support = min((v["score"] for v in o["verdicts"]), default=1.0)
        x.append(features(o["trace"], answer, o["model"] == reader_name, support))
        y.append(is_right(r, answer))
        groups.append(inputs.get("title") or (inputs.get("gold_docs") or ["?"])[0])
        idx.append(i)
    return np.array(x, float), np.array(y, bool), groups, idx


def fit_bars(p: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """(answer, caveat) bars on P(right): `answer` the lowest value above which at least
    TARGET_PRECISION of the answers were right (at least MIN_ANSWERS of them; else no answer is
    confident: 1.01); `caveat` the lowest value below it above which, down to `answer`, at least
    CAVEAT_PRECISION were right (else `answer`: no caveat band), and at least CAVEAT_PRECISION."""
    order = np.argsort(-p)
    ps, rs = p[order], right[order].astype(float)
    answer = 1.01
    for k in range(MIN_ANSWERS, len(ps) + 1):
        if rs[:k].mean() >= TARGET_PRECISION and (k == len(ps) or ps[k] < ps[k - 1]):
            answer = float(ps[k - 1])
    top = int((ps >= answer).sum())
    caveat = answer
    for k in range(top + 1, len(ps) + 1):
        if rs[top:k].mean() >= CAVEAT_PRECISION and (k == len(ps) or ps[k] < ps[k - 1]):
            caveat = float(ps[k - 1])
    # ... and never below CAVEAT_PRECISION itself: P(right) is a fitted probability, and an answer
    # the model itself calls more likely wrong is not shown. The band's pooled precision alone
    # let its lower edge sink to P 0.05 on the Korean folds (the bottom answers nearly all wrong,
    # carried by the right ones above them).
    return answer, min(answer, max(caveat, CAVEAT_PRECISION))


def fit_model(x: np.ndarray, y: np.ndarray, c: float = 1.0) -> Confidence:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x), y)
    w = lr.coef_[0] / scaler.scale_
    b = float(lr.intercept_[0] - np.dot(lr.coef_[0], scaler.mean_ / scaler.scale_))
    model = Confidence(tuple(float(v) for v in w), b, 1.01, 1.01)
    answer, caveat = fit_bars(predict(model, x), y)
    return Confidence(model.weights, b, answer, caveat)


def predict(model: Confidence, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ np.array(model.weights) + model.bias)))


def levels(model: Confidence, p: np.ndarray) -> list[str]:
    return ["answered" if v >= model.answer else "caveat" if v >= model.caveat else "abstained" for v in p]


def train(records: Sequence[dict], reader_name: str, c: float = 1.0, korean: bool = False
          ) -> tuple[Confidence, dict]:
    """The model fitted on every article, and the out-of-fold report of the whole procedure,
    over the records of one language (English, or Korean)."""
    records = [r for r in records if is_korean(r["inputs"]["question"]) == korean]  # each language its own model
    x, y, groups, idx = rows(records, reader_name)
    if len(set(groups)) < 2 or y.all() or not y.any():
        raise ValueError("need right and wrong answers from at least two articles to fit the confidence")
    oof_p, oof_level = np.zeros(len(y)), [""] * len(y)
    for g in sorted(set(groups)):
        test = np.array([gg == g for gg in groups])
        m = fit_model(x[~test], y[~test], c)
        oof_p[test] = predict(m, x[test])
        for j, lv in zip(np.flatnonzero(test), levels(m, oof_p[test])):
            oof_level[j] = lv
    # every record counts in coverage: those without a candidate answer were abstentions
    by_record = dict(zip(idx, oof_level))
    all_levels = [by_record.get(i, "abstained") for i in range(len(records))]
    f1s = [f1_score(candidate(r) or "", r["inputs"]["answers"]) if by_record.get(i, "abstained") != "abstained"
           and r["inputs"]["answerable"] else 0.0 for i, r in enumerate(records)]
    report = {"records": len(records), "rated_answers": int(len(y)), "right": int(y.sum()),
              "articles": len(set(groups)), "C": c, "features": FEATURES,
              "target_precision": TARGET_PRECISION, "caveat_precision": CAVEAT_PRECISION,
              "out_of_fold": answer_metrics(all_levels, [r["inputs"]["answerable"] for r in records], f1s),
              "out_of_fold_auroc": _auroc(oof_p, y),
              "out_of_fold_unanswerable_answered": _mean([lv != "abstained" for lv, r in zip(all_levels, records)
                                                          if not r["inputs"]["answerable"]]),
              "out_of_fold_f1_answerable": _mean([f for f, r in zip(f1s, records) if r["inputs"]["answerable"]]),
              # the pipeline's own answers as a judge test: does a verdict say right vs wrong?
              "balanced_accuracy_on_pipeline_answers": {
                  "grounding_check": _balanced_accuracy(
                      np.array([all(v["supported"] for v in records[i]["outputs"]["verdicts"]) for i in idx]), y),
                  "confidence_shown": _balanced_accuracy(np.array([lv != "abstained" for lv in oof_level]), y)},
              "risk_coverage": coverage_curve(oof_p, [bool(records[i]["inputs"]["answerable"]) for i in idx], y,
                                              sum(bool(r["inputs"]["answerable"]) for r in records))}
    final = fit_model(x, y, c)
    return Confidence(final.weights, final.bias, final.answer, final.caveat, fit=report), report


def _mean(values: list) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _balanced_accuracy(said_right: np.ndarray, y: np.ndarray) -> float:
    return round(float((said_right[y].mean() + (~said_right[~y]).mean()) / 2), 4)


def _auroc(p: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, p)), 4)
