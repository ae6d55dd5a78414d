"""The two searchable indexes of a collection: FaissIndex (dense) and BM25Index (lexical).

Both are keyed by the chunk's stable integer id, so a document can be removed from every
index and from the database by the same ids. Saving writes into a folder the caller
created fresh (rag.store.metadata versions index folders and flips a pointer in one database
transaction), so a crash mid-save never damages the index in use."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


class FaissIndex:
    """Exact inner-product search (IndexFlatIP) behind an id map.

    Flat search is exact and needs no training; at 100k chunks a query costs a few ms
    on this CPU (see docs/benchmarks.md). HNSW would only pay off past ~300k chunks."""

    def __init__(self, dim: int, index=None):
        import faiss

        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return self._index.ntotal

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        self._index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def remove(self, ids) -> int:
        import faiss

        ids = np.asarray(list(ids), dtype=np.int64)
        if ids.size == 0:
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def ids(self) -> np.ndarray:
        import faiss

        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        if len(self) == 0:
            return []
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        scores, ids = self._index.search(q, min(k, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i != -1]

    def save(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self._index, str(folder / "dense.faiss"))

    @classmethod
    def load(cls, folder: Path, dim: int) -> "FaissIndex":
        import faiss

        path = folder / "dense.faiss"
        if not path.exists():
            return cls(dim)
        return cls(dim, faiss.read_index(str(path)))


class BM25Index:
    """Okapi BM25 by bm25s over pre-tokenised chunks (rag.text.tokenize: Korean morphemes).

    bm25s builds a sparse matrix in one pass and cannot add or remove rows, so it is
    rebuilt from the stored tokens on every ingest; that takes about a second per 100k
    chunks, far below embedding cost."""

    def __init__(self, ids: list[int] | None = None, retriever=None):
        self._ids = np.asarray(ids or [], dtype=np.int64)
        self._bm25 = retriever

    def __len__(self) -> int:
        return len(self._ids)

    @classmethod
    def build(cls, ids: list[int], token_lists: list[list[str]]) -> "BM25Index":
        import bm25s

        if not ids:
            return cls()
        retriever = bm25s.BM25()
        # an empty token list would make bm25s drop the row: keep rows aligned with ids
        retriever.index([toks or ["\u2400"] for toks in token_lists], show_progress=False)
        return cls(ids, retriever)

    def search(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        if self._bm25 is None:
            return []
        vocab = self._bm25.vocab_dict
        known = [t for t in tokens if t in vocab]
        if not known:
            return []
        scores = self._bm25.get_scores(known)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self._ids[i]), float(scores[i])) for i in top if scores[i] > 0]

    def save(self, folder: Path) -> None:
        np.save(folder / "lexical_ids.npy", self._ids)
        if self._bm25 is not None:
            self._bm25.save(str(folder / "lexical"), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> "BM25Index":
        import bm25s

        ids_path = folder / "lexical_ids.npy"
        if not ids_path.exists() or not (folder / "lexical").exists():
            return cls()
        retriever = bm25s.BM25.load(str(folder / "lexical"), show_progress=False, verbosity=0)
        return cls(np.load(ids_path).tolist(), retriever)


def fsync_tree(folder: Path) -> None:
    """Flush every file under folder (and the folder entries) to disk before the pointer flips."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")
