"""Calibrated abstention and the answer ladder: answered (confident), caveat (shown, marked low
confidence), abstained (with the reason in plain words).

English answers are scored by rag.answer.confidence: P(the answer is right), fitted on the
pipeline's own answers to train questions, with its two bars (answer, caveat) fitted there too;
an answer between the bars that the grounding check supports is shown as a caveat, with its
reason in trace["caveat"]. Other answers (Korean, or no confidence model shipped) are scored by
sufficiency, with one bar and no caveat band:

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

from rag.answer.prompt import abstain_message, strip_markers
from rag.types import Answer, Hit

# Used when neither RAG_ABSTAIN_THRESHOLD nor a fitted collection value exists.
DEFAULT_THRESHOLD = 0.3


def sufficiency(hits: Sequence[Hit], support: float, answerability: float | None = None) -> float:
    base = max(0.0, support if answerability is None else answerability)
    if hits and hits[0].stage == "reranked":
        return min(max(0.0, hits[0].score), base)
    return base


def score_name(probe, reader_first: bool = False, confidence=None) -> str:
    """Which score a threshold belongs to: fitted thresholds of another score are not reused.
    reader_first: the question's answers may come from the reader (English questions), which
    the confidence model (when shipped) scores."""
    if reader_first and confidence is not None:
        return confidence.name
    base = f"answerability:{probe.decoder}" if probe is not None else "support"
    return f"reader+{base}" if reader_first else base


def threshold_for(settings, store, collection: str, probe=None, reader_first: bool = False,
                  confidence=None) -> tuple[float, float]:
    """(answer bar, caveat bar) on the answer's score: RAG_ABSTAIN_THRESHOLD, else the
    collection's `rag calibrate` value for this score, else the shipped one. The caveat bar is
    the confidence model's (never above the answer bar); without it there is no caveat band."""
    ladder = reader_first and confidence is not None
    caveat = confidence.caveat if ladder else None
    if settings.abstain_threshold is not None:
        answer = settings.abstain_threshold
    else:
        try:
            saved = store.get_collection(collection).settings or {}
        except Exception:  # noqa: BLE001 - a missing collection is reported by retrieval, not here
            saved = {}
        fitted = saved.get("abstain_threshold")
        if fitted is not None and (saved.get("calibration") or {}).get("score", "support") == \
                score_name(probe, reader_first, confidence):
            answer = float(fitted)
        elif ladder:
            answer = confidence.answer
        else:
            answer = probe.threshold if probe is not None else DEFAULT_THRESHOLD
    return answer, answer if caveat is None else min(caveat, answer)


def ground(answer: Answer, verifier, policy: str, threshold: float, judge_threshold: float | None = None,
           caveat_threshold: float | None = None, confidence=None, reader_path: bool = False) -> Answer:
    """Apply the grounding check, the abstention policy and the ladder to an answer the model gave.
    judge_threshold: the claims' P(supported) bar when not the verifier's own. confidence: the
    model that scores the answer (rag.answer.confidence; English), else sufficiency scores it.
    caveat_threshold: the score at or above which an answer below `threshold` is still shown,
    marked low confidence (None: no caveat band). reader_path: the reader's span is the answer.

    policy: drop (remove unsupported sentences; nothing left = abstain), abstain (any
    unsupported sentence = abstain), report (keep the text, record verdicts). In every
    policy a score below both bars abstains."""
    if answer.abstained or verifier is None:
        return answer
    judge_threshold = verifier.threshold if judge_threshold is None else judge_threshold
    check = verifier.verify(answer.question, answer.text, answer.citations, list(answer.context), judge_threshold)
    if confidence is not None:
        suff = confidence.score(answer.trace, strip_markers(answer.text), reader_path, check.min_score)
    else:
        suff = sufficiency(answer.context, check.min_score, answer.trace.get("answerability"))
    caveat_threshold = threshold if caveat_threshold is None else caveat_threshold
    trace = {**answer.trace, "sufficiency": suff, "score": "right" if confidence is not None else "answerable",
             "abstain_threshold": threshold, "caveat_threshold": caveat_threshold, "judge_threshold": judge_threshold,
             "citation_support": {str(k): v for k, v in check.citation_support.items()}}
    out = replace(answer, verdicts=check.verdicts, trace=trace)
    code = None
    if suff < min(threshold, caveat_threshold):
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
        return replace(out, text=abstain_message(answer.question), citations=(), abstained=True,
                       trace={**trace, **abstention(code, suff, caveat_threshold, trace["score"]),
                              "withheld_answer": answer.text,
                              "withheld_citations": [asdict(c) for c in answer.citations]})
    if suff < threshold:  # between the bars, and supported: shown, marked low confidence
        out = replace(out, trace={**out.trace, "caveat": (
            f"The system is {suff:.0%} sure that this answer is right; it gives answers without this note at "
            f"{threshold:.0%} or more. Check it against the sentence it comes from.")})
    return out


def abstention(code: str, confidence: float | None = None, bar: float | None = None, score: str = "answerable") -> dict:
    """Why an answer was not given, for the trace: `abstain_code` for programs and
    `abstain_reason` in plain words for the person who asked (the UI shows it as it is)."""
    reasons = {
        "no_passage": "None of the passages found shares a word with the question, so there is nothing to "
                      "answer from.",
        "model_found_none": "The model read the passages and found no answer to the question in them.",
        "unsupported": "The answer it found is not supported by the passages it cites.",
    }
    if code == "low_confidence" and score == "right":
        reason = (f"The answer it found may be wrong: the system was {confidence:.0%} sure that it is right, "
                  f"and it answers only at {bar:.0%} or more.")
    elif code == "low_confidence":
        reason = (f"The passages may not answer this question: the system was {confidence:.0%} sure that they "
                  f"do, and it answers only at {bar:.0%} or more.")
    else:
        reason = reasons[code]
    return {"abstain_code": code, "abstain_reason": reason}
