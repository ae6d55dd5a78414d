"""Calibrated abstention: one sufficiency score per answer, one fitted threshold per collection.

The sufficiency score is P(the passages answer the question): for an answer of the extractive
reader (rag.reader) the logistic of its no-answer margin, for the decoder's the answerability
probe on the decoder's own prompt state (rag.answerability), where one is shipped for the
decoder; without it, the judge's P(the weakest claim is supported). With reranking on, the
reranker's P(the best passage is relevant) caps it: the reranker can say that nothing relevant
was found, but it is trained on relevance, not on whether an answer is there (rag.crossencoder
reranker_pairs), so it never raises the score, and switching reranking on cannot let more
answers through the gate. The judge's verdicts are applied separately, by the grounding policy.

The threshold is fitted on labelled questions (answerable / unanswerable) to a stated
target: the lowest threshold at which at most `target` of the unanswerable questions are
still answered, which keeps as many answerable ones as that allows. It is saved in the
collection's settings (Store.update_settings) together with the score it was fitted on, so
it travels with the index and is ignored if the score changes; `rag calibrate` refits it.
Unfitted, the probe's own threshold (fitted on the train split) applies. Limits: a threshold
fitted on one corpus and decoder is only approximately right for another; refit after
changing either."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rag.prompt import abstain_message
from rag.types import Answer, Hit

# Used when neither RAG_ABSTAIN_THRESHOLD nor a fitted collection value exists.
DEFAULT_THRESHOLD = 0.3


def sufficiency(hits: Sequence[Hit], support: float, answerability: float | None = None) -> float:
    base = max(0.0, support if answerability is None else answerability)
    if hits and hits[0].stage == "reranked":
        return min(max(0.0, hits[0].score), base)
    return base


def score_name(probe, reader_first: bool = False) -> str:
    """Which score a threshold belongs to: fitted thresholds of another score are not reused.
    reader_first: the question's answers may come from the reader (English, RAG_ANSWERER)."""
    base = f"answerability:{probe.decoder}" if probe is not None else "support"
    return f"reader+{base}" if reader_first else base


def threshold_for(settings, store, collection: str, probe=None, reader_first: bool = False) -> float:
    if settings.abstain_threshold is not None:
        return settings.abstain_threshold
    try:
        saved = store.get_collection(collection).settings or {}
    except Exception:  # noqa: BLE001 - a missing collection is reported by retrieval, not here
        saved = {}
    fitted = saved.get("abstain_threshold")
    if fitted is not None and (saved.get("calibration") or {}).get("score", "support") == score_name(probe, reader_first):
        return float(fitted)
    return probe.threshold if probe is not None else DEFAULT_THRESHOLD


def ground(answer: Answer, verifier, policy: str, threshold: float, judge_threshold: float | None = None) -> Answer:
    """Apply the grounding check and the abstention policy to an answer the model gave.
    judge_threshold: the claims' P(supported) bar when not the verifier's own.

    policy: drop (remove unsupported sentences; nothing left = abstain), abstain (any
    unsupported sentence = abstain), report (keep the text, record verdicts). In every
    policy a sufficiency score below the threshold abstains."""
    if answer.abstained or verifier is None:
        return answer
    judge_threshold = verifier.threshold if judge_threshold is None else judge_threshold
    check = verifier.verify(answer.question, answer.text, answer.citations, list(answer.context), judge_threshold)
    suff = sufficiency(answer.context, check.min_score, answer.trace.get("answerability"))
    trace = {**answer.trace, "sufficiency": suff, "abstain_threshold": threshold,
             "judge_threshold": judge_threshold,
             "citation_support": {str(k): v for k, v in check.citation_support.items()}}
    out = replace(answer, verdicts=check.verdicts, trace=trace)
    reason = None
    if suff < threshold:
        what = "P(the passages answer the question)" if "answerability" in answer.trace else "sufficiency"
        reason = f"{what} {suff:.2f} is below the calibrated threshold {threshold:.2f}"
    elif not check.supported and policy == "abstain":
        reason = "the grounding check found an unsupported claim"
    elif not check.supported and policy == "drop":
        if not check.kept_text:
            reason = "the grounding check found no supported claim"
        else:
            kept_markers = {c.marker for c in answer.citations if f"[{c.marker}]" in check.kept_text}
            cites = tuple(c for c in answer.citations if c.marker in kept_markers) or answer.citations
            out = replace(out, text=check.kept_text, citations=cites,
                          trace={**trace, "dropped_claims": [v.claim for v in check.verdicts if not v.supported]})
    if reason:
        out = replace(out, text=abstain_message(answer.question), citations=(), abstained=True,
                      trace={**trace, "abstain_reason": reason, "withheld_answer": answer.text})
    return out


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

    from evals.metrics import f1_score  # lazily: the CLI edge may reach into evals
    from rag.prompt import strip_markers

    rows = [json.loads(line) for line in open(Path(data_dir) / "qa.jsonl", encoding="utf-8") if line.strip()]
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
    result = {"abstain_threshold": t, "score": score_name(service.answerability, service.reader is not None),
              "objective": "squad2-f1" if target is None else "answered-unanswerable-share", "target": target,
              "questions": len(rows), "data": str(data_dir),
              "answered_unanswerable_rate": sum(x for x, a in zip(answered, labels) if not a) / max(1, n_un),
              "answered_answerable_rate": sum(x for x, a in zip(answered, labels) if a) / max(1, n_an),
              "f1_answerable": sum(f for f, x, a in zip(f1s, answered, labels) if a and x) / max(1, n_an)}
    service.store.update_settings(collection, abstain_threshold=t, calibration=result)
    if as_default and service.answerability is not None:
        from rag.answerability import probe_path

        probe = service.answerability
        replace(probe, threshold=t, fit={**probe.fit, "threshold_calibration": result}).save(
            probe_path(probe.decoder))
    return result
