"""Hybrid retrieval: BM25 and dense search over one collection, fused by reciprocal rank.

RRF (Cormack et al. 2009) needs no score calibration between the two retrievers, which
matters because BM25 scores are unbounded and cosine scores are not. Each retriever
returns `candidates` hits; the fused list is cut to `k`. Later stages (graph expansion,
reranking) take the fused list as input."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rag.store.collection import IndexSet
from rag.models.embed import Embedder
from rag.text import tokenize
from rag.types import Chunk, Hit

ChunkLookup = Callable[[list[int]], dict[int, Chunk]]


class Retriever(Protocol):
    def retrieve(self, question: str, k: int) -> list[Hit]: ...


def rrf(rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of id rankings: score(id) = sum_i w_i / (k + rank_i(id))."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for w, ranking in zip(weights, rankings):
        for rank, cid in enumerate(ranking, 1):
            scores[cid] = scores.get(cid, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass
class HybridRetriever:
    indexes: IndexSet
    embedder: Embedder
    lookup: ChunkLookup
    candidates: int = 30
    rrf_k: int = 60
    mode: str = "hybrid"  # hybrid | dense | lexical

    def dense(self, question: str, n: int) -> list[tuple[int, float]]:
        return self.indexes.dense.search(self.embedder.embed_query(question), n)

    def lexical(self, question: str, n: int) -> list[tuple[int, float]]:
        return self.indexes.lexical.search(tokenize(question), n)

    def retrieve(self, question: str, k: int) -> list[Hit]:
        n = max(k, self.candidates)
        dense = self.dense(question, n) if self.mode in ("hybrid", "dense") else []
        lexical = self.lexical(question, n) if self.mode in ("hybrid", "lexical") else []
        if self.mode == "dense":
            ranked, stage = dense[:k], "dense"
        elif self.mode == "lexical":
            ranked, stage = lexical[:k], "lexical"
        else:
            ranked = rrf([[i for i, _ in dense], [i for i, _ in lexical]], self.rrf_k)[:k]
            stage = "fused"
        chunks = self.lookup([i for i, _ in ranked])
        return [Hit(chunks[i], s, stage) for i, s in ranked if i in chunks]
