"""Reranking: score (question, passage) pairs jointly and reorder the retrieved candidates.

Two implementations of one protocol:
- CrossEncoderReranker: our LoRA-tuned MiniLM cross-encoder (rag.models.crossencoder), English.
  MiniLM's tokenizer shreds Hangul, so Korean questions keep the retrieval order.
- KeywordReranker: the deterministic fake for tests and RAG_BACKEND=fake.

Every reranked Hit carries stage "reranked" and score = P(relevant) in [0, 1] (the
calibrated-abstention code reads it). `fusion` < 1 mixes the retrieval ranking back in by
weighted reciprocal rank fusion, which protects domains the reranker never saw."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from rag.retrieve.hybrid import rrf
from rag.text import is_korean, tokenize
from rag.types import Hit


class Reranker(Protocol):
    name: str

    def rerank(self, question: str, hits: Sequence[Hit], k: int) -> list[Hit]: ...


def reorder(hits: Sequence[Hit], scores: Sequence[float], k: int, fusion: float = 1.0) -> list[Hit]:
    """Hits ordered by reranker score (fusion=1) or by weighted RRF of the retrieval order and
    the reranker order; each Hit's score becomes its reranker score. Ties keep retrieval order."""
    by_score = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    if fusion >= 1.0:
        order = by_score
    else:
        fused = rrf([list(range(len(hits))), by_score], k=10, weights=[1.0 - fusion, fusion])
        order = [i for i, _ in fused]
    return [replace(hits[i], score=float(scores[i]), stage="reranked") for i in order[:k]]


class KeywordReranker:
    """Fake: share of the question's content words found in the passage (and its title)."""

    name = "keyword"

    def rerank(self, question: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        q = set(tokenize(question))
        scores = [len(q & set(tokenize(h.chunk.title + " " + h.chunk.text))) / max(1, len(q)) for h in hits]
        return reorder(hits, scores, k)


# The first CANDIDATES retrieved hits are reranked; the rest keep retrieval order. FUSION: the
# weight of the reranker's order against retrieval's (weighted RRF; 1 = reranker order only).
# 0.5: alone the reranker ranks below retrieval on all three dev sets, fused it is about even.
CANDIDATES = 20
FUSION = 0.5


class CrossEncoderReranker:
    def __init__(self, scorer, fusion: float = 1.0):
        self.scorer = scorer  # rag.models.crossencoder.PairScorer
        self.fusion = fusion
        self.name = "cross-encoder:" + scorer.adapter_dir.name

    def rerank(self, question: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if not hits:
            return []
        if is_korean(question) or any(is_korean(h.chunk.text) for h in hits[:3]):
            # Hangul becomes [UNK] soup for MiniLM: its scores would be noise.
            return list(hits[:k])
        from rag.models.crossencoder import passage_text

        scores = self.scorer.score([(question, passage_text(h.chunk.title, h.chunk.text)) for h in hits])
        return reorder(hits, scores.tolist(), k, self.fusion)


def make_reranker(settings) -> Reranker | None:
    """The configured reranker, or None when reranking is off (the default: docs/results.md)."""
    if settings.rerank == "off":
        return None
    if settings.backend == "fake":
        return KeywordReranker()
    from rag.models.crossencoder import PairScorer, trained_path

    if not (trained_path("reranker") / "adapter_config.json").exists():
        import warnings

        warnings.warn("no trained reranker in rag/models/trained/reranker (run `rag train reranker`): "
                      "reranking is off", stacklevel=2)
        return None
    return CrossEncoderReranker(PairScorer(trained_path("reranker"), settings.threads, cache_dir=settings.models_path), FUSION)
