"""A collection's indexes on disk, versioned, and the one transaction that changes them.

Layout: <data_dir>/collections/<name>/v000007/{dense.faiss, lexical/, lexical_ids.npy, ...}.
`apply_changes` writes the next version folder in full, fsyncs it, then commits the
database rows together with the collection's new `index_version` in one transaction. A
crash before the commit leaves an orphan folder (swept on the next change) and the old
version in use; a crash after it leaves the new one. Either way every reader sees a
consistent pair of rows and indexes."""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from rag.errors import InputError
from rag.store import graph
from rag.store.index import BM25Index, FaissIndex, fsync_tree
from rag.store.metadata import ChunkRow, CollectionRow, DocumentRow, IngestRunRow, Store
from rag.types import Chunk, Document

_NAME = re.compile(r"^[\w][\w.\-]{0,63}$")


def check_name(name: str) -> str:
    """Collection names become folder names: letters, digits, _ . - only (Korean letters too)."""
    if not _NAME.match(name or "") or ".." in name:
        raise InputError(f"invalid collection name {name!r}: use up to 64 letters, digits, '_', '-' or '.'")
    return name


@dataclass
class IndexSet:
    """Everything searchable for one version of a collection. Extra per-chunk structures
    (the knowledge graph) are listed in EXTRAS, each with its load and rebuild."""

    dense: FaissIndex
    lexical: BM25Index
    extras: dict[str, object] = field(default_factory=dict)


# Structures built beside the indexes: name -> (load(folder), rebuild(folder, old, session, col, removed, added)).
EXTRAS: dict[str, tuple[Callable, Callable]] = {"graph": (graph.KnowledgeGraph.load, graph.rebuild)}


def collection_dir(data_dir: Path, name: str) -> Path:
    return data_dir / "collections" / check_name(name)


def version_dir(data_dir: Path, name: str, version: int) -> Path:
    return collection_dir(data_dir, name) / f"v{version:06d}"


def load_indexes(data_dir: Path, col: CollectionRow) -> IndexSet:
    folder = version_dir(data_dir, col.name, col.index_version)
    extras = {k: load(folder) for k, (load, _r) in EXTRAS.items()}
    return IndexSet(FaissIndex.load(folder, col.dim), BM25Index.load(folder), extras)


class IndexCache:
    """Loaded indexes per (collection, version): a new version is picked up on the next
    request, an old one is dropped. Thread-safe for the API."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, IndexSet]] = {}

    def get(self, col: CollectionRow) -> IndexSet:
        with self._lock:
            hit = self._cache.get(col.name)
            if hit and hit[0] == col.index_version:
                return hit[1]
            idx = load_indexes(self.data_dir, col)
            self._cache[col.name] = (col.index_version, idx)
            return idx


@contextmanager
def collection_lock(data_dir: Path, name: str) -> Iterator[None]:
    """One writer per collection across processes (CLI and API may both ingest)."""
    folder = collection_dir(data_dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class NewDocument:
    doc: Document
    chunks: list[Chunk]
    vectors: np.ndarray
    tokens: list[list[str]]


def apply_changes(store: Store, data_dir: Path, collection: str, embedder: str, dim: int,
                  add: list[NewDocument], remove_sources: list[str],
                  run_stats: dict | None = None, before_commit: Callable[[], None] | None = None) -> CollectionRow:
    """Remove documents by source and add new ones, in the database and every index, atomically.
    Call under `collection_lock`. `before_commit` is a test hook to simulate a crash."""
    from rag.store.metadata import _now

    with store.transaction() as s:
        col = store.collection(s, collection, embedder, dim, create=True)
        old = version_dir(data_dir, col.name, col.index_version)
        idx = load_indexes(data_dir, col)
        removed = _delete_sources(s, col.id, remove_sources)
        idx.dense.remove(removed)
        added: list[Chunk] = []
        for nd in add:
            row = DocumentRow(collection_id=col.id, doc_hash=nd.doc.id, source=nd.doc.source,
                              title=nd.doc.title, text=nd.doc.text, meta=nd.doc.meta)
            s.add(row)
            s.flush()
            rows = [ChunkRow(document_id=row.id, collection_id=col.id, ordinal=c.ordinal, start=c.start,
                             end=c.end, text=c.text, tokens=json.dumps(t, ensure_ascii=False))
                    for c, t in zip(nd.chunks, nd.tokens)]
            s.add_all(rows)
            s.flush()
            if rows:
                idx.dense.add(np.array([r.id for r in rows]), nd.vectors)
            added.extend(Chunk(r.id, nd.doc.id, r.text, r.start, r.end, r.ordinal, nd.doc.source, nd.doc.title)
                         for r in rows)
        ids, toks = store.chunk_tokens(s, col.id)
        lexical = BM25Index.build(ids, toks)

        new_version = col.index_version + 1
        folder = version_dir(data_dir, col.name, new_version)
        if folder.exists():
            shutil.rmtree(folder)  # an orphan from an interrupted earlier attempt
        folder.mkdir(parents=True)
        idx.dense.save(folder)
        lexical.save(folder)
        for _name, (_load, rebuild) in EXTRAS.items():
            rebuild(folder, old, s, col, removed, added)
        fsync_tree(folder)
        col.index_version = new_version
        s.add(IngestRunRow(collection_id=col.id, finished_at=_now(), status="done", stats=run_stats or {}))
        if before_commit is not None:
            before_commit()
    sweep_versions(data_dir, col.name, keep=new_version)
    return col


def _delete_sources(s: Session, collection_id: int, sources: list[str]) -> list[int]:
    if not sources:
        return []
    doc_ids = list(s.scalars(select(DocumentRow.id).where(DocumentRow.collection_id == collection_id,
                                                          DocumentRow.source.in_(sources))))
    if not doc_ids:
        return []
    chunk_ids = list(s.scalars(select(ChunkRow.id).where(ChunkRow.document_id.in_(doc_ids))))
    s.execute(delete(ChunkRow).where(ChunkRow.document_id.in_(doc_ids)))
    s.execute(delete(DocumentRow).where(DocumentRow.id.in_(doc_ids)))
    return chunk_ids


def sweep_versions(data_dir: Path, name: str, keep: int) -> None:
    """Delete every version folder but `keep` (old ones and orphans of crashed writes)."""
    for p in collection_dir(data_dir, name).glob("v[0-9]*"):
        if p.name != f"v{keep:06d}":
            shutil.rmtree(p, ignore_errors=True)


def drop_collection(store: Store, data_dir: Path, name: str) -> bool:
    """Remove a collection: its rows in one transaction, then its index folders (a crash in
    between leaves folders no row names, which nothing reads). False when there was none."""
    with collection_lock(data_dir, name):
        with store.transaction() as s:
            col = s.scalar(select(CollectionRow).where(CollectionRow.name == name))
            if col is None:
                return False
            s.execute(delete(ChunkRow).where(ChunkRow.collection_id == col.id))
            s.execute(delete(DocumentRow).where(DocumentRow.collection_id == col.id))
            s.execute(delete(IngestRunRow).where(IngestRunRow.collection_id == col.id))
            s.delete(col)
    shutil.rmtree(collection_dir(data_dir, name), ignore_errors=True)
    return True
