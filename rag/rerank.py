"""Reranking: score (question, passage) pairs jointly and reorder the retrieved candidates.

Three implementations of one protocol:
- CrossEncoderReranker: our LoRA-tuned MiniLM cross-encoder (rag.crossencoder), English.
  MiniLM's tokenizer shreds Hangul, so Korean questions go to `korean` instead: the
  query-likelihood reranker below, or (default) no reranking at all -- retrieval order kept.
- QueryLikelihoodReranker: score = mean log P(question | passage) under the decoder
  (measured in shared/MODELS.md: top-1 9/9 on a small test, any language the decoder reads;
  slow: one decoder forward per pair).
- KeywordReranker: the deterministic fake for tests and RAG_BACKEND=fake.

Every reranked Hit carries stage "reranked" and score = P(relevant) in [0, 1] (the
calibrated-abstention code reads it). `fusion` < 1 mixes the retrieval ranking back in by
weighted reciprocal rank fusion, which protects domains the reranker never saw."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from rag.retrieve import rrf
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


class CrossEncoderReranker:
    def __init__(self, scorer, korean: Reranker | None = None, fusion: float = 1.0):
        self.scorer = scorer  # rag.crossencoder.PairScorer
        self.korean = korean
        self.fusion = fusion
        self.name = "cross-encoder:" + scorer.adapter_dir.name

    def rerank(self, question: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if not hits:
            return []
        if is_korean(question) or any(is_korean(h.chunk.text) for h in hits[:3]):
            # Hangul becomes [UNK] soup for MiniLM: its scores would be noise.
            return self.korean.rerank(question, hits, k) if self.korean else list(hits[:k])
        from rag.crossencoder import passage_text

        scores = self.scorer.score([(question, passage_text(h.chunk.title, h.chunk.text)) for h in hits])
        return reorder(hits, scores.tolist(), k, self.fusion)


class QueryLikelihoodReranker:
    """Reranks with the decoder: how likely is the question, given the passage? Scores are
    mapped to (0, 1) by exp(mean log-prob) so they read like the other rerankers'."""

    name = "query-likelihood"

    def __init__(self, generator):
        self.generator = generator  # rag.generate.HFGenerator (model, tokenizer)

    def loglik(self, question: str, passage: str) -> float:
        import torch

        tok, model = self.generator.tokenizer, self.generator.model
        prefix = tok(f"Passage: {passage}\nA question this passage answers: ", add_special_tokens=False)["input_ids"]
        target = tok(question, add_special_tokens=False)["input_ids"]
        if not target:
            return -math.inf
        ids = torch.tensor([prefix[-400:] + target])
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, -len(target) - 1 : -1].float()
        logp = torch.log_softmax(logits, -1).gather(1, torch.tensor(target).unsqueeze(1))
        return float(logp.mean())

    def rerank(self, question: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        scores = [math.exp(self.loglik(question, h.chunk.text)) for h in hits]
        return reorder(hits, scores, k)


def make_reranker(settings, generator_fn) -> Reranker | None:
    """The configured reranker, or None when reranking is off. generator_fn is called only
    if the query-likelihood fallback is chosen (it loads the decoder)."""
    if settings.rerank == "off":
        return None
    if settings.backend == "fake":
        return KeywordReranker()
    if settings.rerank == "query-likelihood":
        return QueryLikelihoodReranker(generator_fn())
    from rag.crossencoder import PairScorer, trained_path

    if not (trained_path("reranker") / "adapter_config.json").exists():
        import warnings

        warnings.warn("no trained reranker in rag/models_trained/reranker (run `rag train reranker`): "
                      "reranking is off", stacklevel=2)
        return None
    korean = QueryLikelihoodReranker(generator_fn()) if settings.rerank_korean == "query-likelihood" else None
    return CrossEncoderReranker(PairScorer(trained_path("reranker"), settings.threads), korean, settings.rerank_fusion)
