"""Calibrated abstention: one sufficiency score per answer, one fitted threshold per collection.

The sufficiency score is P(the passages answer the question): for an answer of the extractive
reader (rag.answer.reader) the logistic of its no-answer margin, for the decoder's the answerability
probe on the decoder's own prompt state (rag.answer.answerability), where one is shipped for the
decoder; without it, the judge's P(the weakest claim is supported). With reranking on, the
reranker's P(the best passage is relevant) caps it: the reranker can say that nothing relevant
was found, but it is trained on relevance, not on whether an answer is there
(rag.train.crossencoder.reranker_pairs), so it never raises the score, and switching reranking
on cannot let more answers through the gate. The judge's verdicts are applied separately, by the grounding policy.

The threshold is fitted on labelled questions (answerable / unanswerable) to a stated
target: the lowest threshold at which at most `target` of the unanswerable questions are
still answered, which keeps as many answerable ones as that allows. It is saved in the
collection's settings (Store.update_settings) together with the score it was fitted on, so
it travels with the index and is ignored if the score changes; `rag calibrate` refits it
(rag.train.calibrate).
Unfitted, the probe's own threshold (fitted on the train split) applies. Limits: a threshold
fitted on one corpus and decoder is only approximately right for another; refit after
changing either."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace

from rag.answer.prompt import abstain_message
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
    reader_first: the question's answers may come from the reader (English questions)."""
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
    code = None
    if suff < threshold:
        code = "low_confidence"
    elif not check.supported and policy == "abstain":
        code = "unsupported"
    elif not check.supported and policy == "drop":
        if not check.kept_text:
            code = "unsupported"
        else:
            kept_markers = {c.marker for c in answer.citations if f"[{c.marker}]" in check.kept_text}
            cites = tuple(c for c in answer.citations if c.marker in kept_markers) or answer.citations
            out = replace(out, text=check.kept_text, citations=cites,
                          trace={**trace, "dropped_claims": [v.claim for v in check.verdicts if not v.supported]})
    if code:
        out = replace(out, text=abstain_message(answer.question), citations=(), abstained=True,
                      trace={**trace, **abstention(code, suff, threshold), "withheld_answer": answer.text,
                             "withheld_citations": [asdict(c) for c in answer.citations]})
    return out


def abstention(code: str, confidence: float | None = None, bar: float | None = None) -> dict:
    """Why an answer was not given, for the trace: `abstain_code` for programs and
    `abstain_reason` in plain words for the person who asked (the UI shows it as it is)."""
    reasons = {
        "no_passage": "None of the passages found shares a word with the question, so there is nothing to "
                      "answer from.",
        "model_found_none": "The model read the passages and found no answer to the question in them.",
        "unsupported": "The answer it found is not supported by the passages it cites.",
    }
    if code == "low_confidence":
        reason = (f"The passages may not answer this question: the system was {confidence:.0%} sure that they "
                  f"do, and it answers only at {bar:.0%} or more.")
    else:
        reason = reasons[code]
    return {"abstain_code": code, "abstain_reason": reason}
