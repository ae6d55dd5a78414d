"""Fitting abstention thresholds on labelled questions: `rag calibrate` per collection, and the
arithmetic the trainers use (a target share of unanswerable questions answered, or SQuAD 2.0's
best-F1 threshold). The answer-time gate that applies them is rag.answer.abstain."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rag.answer.abstain import score_name
from rag.jsonl import read_jsonl


def fit_threshold(scores: Sequence[float], answerable: Sequence[bool], target: float) -> float:
    """Lowest threshold t with share(unanswerable answered: score >= t) <= target.
    Items the model itself abstained on carry score -1 (never answered)."""
    unans = sorted((s for s, a in zip(scores, answerable) if not a), reverse=True)
    if not unans:
        return 0.0
    allowed = int(math.floor(target * len(unans) + 1e-9))
    if allowed >= len(unans):
        return 0.0
    if unans[allowed] < 0:  # that item was never answered anyway
        return 0.0
    return unans[allowed] + 1e-6  # may exceed 1: "answer nothing" is the only way to meet the target


def best_f1_threshold(scores: Sequence[float], answerable: Sequence[bool], f1s: Sequence[float]) -> float:
    """The threshold that maximises SQuAD 2.0's overall F1 (as its official script's
    best_f1_thresh): an answered answerable question scores its F1, an unanswerable one
    scores 1 when not answered. Items scored -1 were not answered at any threshold."""
    n = len(scores)
    if not n:
        return 0.0
    # start from "answer nothing" and lower the threshold one item at a time
    total = sum(1.0 for a in answerable if not a)
    best_t, best = max(scores, default=0.0) + 1e-6, total
    for i in sorted(range(n), key=lambda i: -scores[i]):
        if scores[i] < 0:
            break
        total += f1s[i] if answerable[i] else -1.0
        if total > best + 1e-12:
            best, best_t = total, scores[i]
    return best_t


def calibrate_collection(service, collection: str, data_dir: Path, target: float | None = 0.05,
                         limit: int | None = None, as_default: bool = False) -> dict:
    """Ask the labelled questions of data_dir/qa.jsonl against `collection` with the
    threshold disabled, fit it and save it with the collection. target: the largest share of
    unanswerable questions that may be answered; None: the threshold that maximises SQuAD 2.0
    F1 (needs gold `answers`). as_default: also make it the shipped probe's default."""
    from tqdm import tqdm

    from rag.answer.prompt import strip_markers
    from rag.metrics import f1_score

    rows = read_jsonl(Path(data_dir) / "qa.jsonl")
    rows = rows[:limit] if limit else rows
    saved = service.settings
    service.settings = saved.model_copy(update={"abstain_threshold": 0.0})
    scores, labels, f1s = [], [], []
    try:
        for r in tqdm(rows, desc="calibrate", unit="q"):
            a = service.ask(r["question"], collection)
            # abstained with the threshold off (model, relevance gate, judge): never answered
            scores.append(-1.0 if a.abstained or "sufficiency" not in a.trace else float(a.trace["sufficiency"]))
            labels.append(bool(r.get("answerable", True)))
            f1s.append(0.0 if a.abstained else f1_score(strip_markers(a.text), r.get("answers") or []))
    finally:
        service.settings = saved
    t = fit_threshold(scores, labels, target) if target is not None else best_f1_threshold(scores, labels, f1s)
    answered = [s >= t for s in scores]
    n_un = sum(1 for a in labels if not a)
    n_an = len(labels) - n_un
    result = {"abstain_threshold": t,
              "score": score_name(service.answerability, service.reader is not None, service.confidence),
              "objective": "squad2-f1" if target is None else "answered-unanswerable-share", "target": target,
              "questions": len(rows), "data": str(data_dir),
              "answered_unanswerable_rate": sum(x for x, a in zip(answered, labels) if not a) / max(1, n_un),
              "answered_answerable_rate": sum(x for x, a in zip(answered, labels) if a) / max(1, n_an),
              "f1_answerable": sum(f for f, x, a in zip(f1s, answered, labels) if a and x) / max(1, n_an)}
    service.store.update_settings(collection, abstain_threshold=t, calibration=result)
    if as_default and service.answerability is not None:
        from rag.answer.answerability import probe_path

        probe = service.answerability
        replace(probe, threshold=t, fit={**probe.fit, "threshold_calibration": result}).save(
            probe_path(probe.decoder))
    return result
