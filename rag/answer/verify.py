"""The answer-time grounding check: every claim of an answer against the passages it cites.

An answer is split into claims (sentences). Each claim is scored by a judge against every
passage in the context; the verdict records the best-supporting passage among those the claim
cites (any passage when it cites none), so the evidence shown is what the answer cites. A claim is
supported only if (a) the judge's P(supported) reaches the threshold and (b) the
deterministic checks pass: every number, year, quoted span and capitalised name in the
claim occurs in the passages it cites (or, uncited, in the context). The judge alone misses
a swapped number; the checks alone miss a wrong relation: together they cover both.

Judges: the support probe on the decoder's state after the claim (rag.answer.judge) decides
English claims when one ships for the decoder; a per-passage judge picks the evidence passage
(and decides where no probe applies): CrossEncoderJudge (our LoRA-tuned MiniLM,
rag.models.crossencoder, English) or LexicalJudge (share of the claim's content words found in the
passage; Korean claims, which MiniLM cannot read, and the fake backend). Limits: claims are
sentences, not atomic facts; a sentence that mixes a supported and an unsupported fact is
judged as a whole."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rag.answer.prompt import sentences
from rag.text import is_korean, tokenize
from rag.types import Citation, Hit, Verdict

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_QUOTED = re.compile(r"[\"“”]([^\"“”]{3,})[\"“”]")
_NAME = re.compile(r"\b[A-Z][a-zA-Z\-']+(?:\s+(?:of|de|van|von|the|and)?\s*[A-Z][a-zA-Z\-']+)*")
_MONTHS = "january february march april may june july august september october november december".split()


class Judge(Protocol):
    name: str

    def support(self, question: str, claim: str, passages: Sequence[str]) -> list[float]: ...


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"\s+", " ", text.replace("\u2013", "-").replace("\u2014", "-"))


def facts(claim: str) -> list[str]:
    """Surface facts a supported claim must share with its passages: numbers (commas
    ignored), quoted spans, capitalised names (words that start the claim count: answers
    like "Delhi" are all name) and month names."""
    out = [n.replace(",", "") for n in _NUMBER.findall(claim)]
    out += [q.strip() for q in _QUOTED.findall(claim)]
    for m in _NAME.finditer(claim):
        words = [w for w in m.group(0).split() if w.lower() not in ("the", "a", "an", "it", "he", "she", "they")]
        out += [w for w in words if w[0].isupper() and len(w) > 1]
    out += [w for w in _MONTHS if re.search(rf"\b{w}\b", claim.lower())]
    return list(dict.fromkeys(o for o in out if o))


def missing_facts(claim: str, passages: Sequence[str]) -> list[str]:
    """The claim's facts that occur in none of the passages (case-insensitive; numbers
    compared without thousands separators)."""
    text = _norm(" ".join(passages))
    plain = text.replace(",", "")
    missing = []
    for f in facts(claim):
        g = _norm(f)
        if g in text or g.replace(",", "") in plain:
            continue
        if g.isdigit() is False and g.rstrip("s") in text:  # plural/possessive variants: "Normans" vs "Norman"
            continue
        missing.append(f)
    return missing


class LexicalJudge:
    """Share of the claim's content words (Korean morphemes) that occur in the passage."""

    name = "lexical"

    def support(self, question: str, claim: str, passages: Sequence[str]) -> list[float]:
        c = set(tokenize(claim))
        if not c:
            return [1.0 for _ in passages]
        return [len(c & set(tokenize(p))) / len(c) for p in passages]


class CrossEncoderJudge:
    """Our trained judge for English claims; Korean claims go to the lexical judge."""

    def __init__(self, scorer, fallback: Judge | None = None):
        self.scorer = scorer  # rag.models.crossencoder.PairScorer
        self.fallback = fallback or LexicalJudge()
        self.name = "cross-encoder:" + scorer.adapter_dir.name

    def load(self) -> None:
        self.scorer.load()

    def support(self, question: str, claim: str, passages: Sequence[str]) -> list[float]:
        if is_korean(claim) or is_korean(question):
            return self.fallback.support(question, claim, passages)
        from rag.models.crossencoder import judge_text

        return self.scorer.score([(judge_text(question, claim), p) for p in passages]).tolist()


@dataclass(frozen=True)
class Check:
    """A verified answer: the verdicts plus what the policy needs."""

    verdicts: tuple[Verdict, ...]
    kept_text: str  # the answer with unsupported sentences removed
    citation_support: dict[int, float] = field(default_factory=dict)  # marker -> best support of a claim citing it

    @property
    def supported(self) -> bool:
        return all(v.supported for v in self.verdicts)

    @property
    def min_score(self) -> float:
        return min((v.score for v in self.verdicts), default=1.0)


THRESHOLD = 0.5  # P(supported) a claim needs; the reader's spans have their own (Reader.judge_threshold)


class Verifier:
    def __init__(self, judge: Judge, threshold: float = THRESHOLD, state_judge=None):
        self.judge = judge  # per passage: picks each claim's evidence passage
        self.threshold = threshold
        # rag.answer.judge.StateJudge: when present it decides English claims (P(supported) over
        # the whole context, from the decoder's state); the per-passage judge still picks the evidence.
        self.state_judge = state_judge

    def load(self) -> None:
        """Load the judge's model now (RagService.warm), not on the first answer."""
        if hasattr(self.judge, "load"):
            self.judge.load()

    @property
    def name(self) -> str:
        return self.state_judge.name if self.state_judge is not None else getattr(self.judge, "name", "none")

    def verify(self, question: str, text: str, citations: Sequence[Citation], hits: Sequence[Hit],
               threshold: float | None = None) -> Check:
        """threshold: P(supported) a claim needs (default self.threshold; the reader's spans
        have their own, rag.answer.reader.Reader.judge_threshold)."""
        threshold = self.threshold if threshold is None else threshold
        passages = [h.chunk.text for h in hits]
        cited_all = [c.marker for c in citations if 1 <= c.marker <= len(hits)]
        verdicts, kept, cite_support = [], [], {}
        for sent in sentences(text) or [text]:
            claim = _MARKER.sub("", sent).strip(" .")
            if not claim:
                continue
            markers = [int(n) for m in _MARKER.findall(sent) for n in re.split(r"\s*,\s*", m)]
            markers = [n for n in markers if 1 <= n <= len(hits)] or cited_all
            scores = self.judge.support(question, claim, passages) if passages else []
            # Judge over the whole context: a claim supported by an uncited passage is grounded
            # (not a hallucination) but its citation is wrong, which citation_precision counts.
            best = max(range(len(scores)), key=lambda i: scores[i]) if scores else None
            score = scores[best] if best is not None else 0.0
            # the evidence shown is the best of the passages the claim cites (any, when it cites none)
            evidence = max((n - 1 for n in markers), key=lambda i: scores[i]) if scores and markers else best
            if self.state_judge is not None and hits and not (is_korean(claim) or is_korean(question)):
                score = self.state_judge.claim_support(question, claim, hits)
            ev_passages = [passages[n - 1] for n in markers] if markers else passages
            missing = missing_facts(claim, ev_passages)
            if missing:
                score = min(score, 0.1)  # a number or name the passages never mention: not supported
            ok = score >= threshold
            verdicts.append(Verdict(claim, ok, float(score), hits[evidence].chunk.id if evidence is not None else None))
            for n in markers:
                s = scores[n - 1] if scores and not missing else 0.0
                cite_support[n] = max(cite_support.get(n, 0.0), float(s))
            if ok:
                kept.append(sent)
        return Check(tuple(verdicts), " ".join(kept).strip(), cite_support)


def make_verifier(settings, generator=None) -> Verifier | None:
    """The configured grounding check. `generator`: the pipeline's decoder, whose support probe
    (rag.answer.judge) decides English claims when one ships for it."""
    if settings.verify == "off":
        return None
    if settings.backend == "fake":
        return Verifier(LexicalJudge())
    from rag.answer.judge import make_state_judge
    from rag.models.crossencoder import PairScorer, trained_path

    state = make_state_judge(generator) if generator is not None else None
    if not (trained_path("judge") / "adapter_config.json").exists():
        import warnings

        warnings.warn("no trained judge in rag/models/trained/judge (run `rag train judge`): "
                      "claims are judged by word overlap only", stacklevel=2)
        return Verifier(LexicalJudge(), state_judge=state)
    return Verifier(CrossEncoderJudge(PairScorer(trained_path("judge"), settings.threads, max_length=256,
                                                         cache_dir=settings.models_path)),
                    state_judge=state)
