"""Ingest and delete: the orchestration from files to a committed collection version.

Dedup by content hash: a source whose text is unchanged is skipped; an edited source
replaces its old version's chunks; the same text under a second name is skipped as a
duplicate. Embedding (the slow part) happens before the database transaction opens, so
a long ingest never holds a write lock while it computes."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import select
from tqdm import tqdm

from ingest.chunk import split_document
from ingest.load import LoadError, load_paths
from rag.store.collection import NewDocument, apply_changes, check_name, collection_lock
from rag.config import Settings
from rag.models.embed import Embedder
from rag.store.graph import extraction
from rag.errors import InputError, NotFoundError, StorageFullError
from rag.store.metadata import DocumentRow, Store
from rag.text import tokenize
from rag.types import Document

EMBED_BATCH = 32  # chunks per embedder call, and per progress update


@dataclass
class IngestReport:
    collection: str
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    index_version: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["counts"] = {k: len(d[k]) for k in ("added", "replaced", "unchanged", "duplicates", "errors")}
        return d

    def summary(self) -> str:
        c = self.to_dict()["counts"]
        rate = self.chunks / self.seconds if self.seconds else 0.0
        lines = [f"collection {self.collection}: {c['added']} added, {c['replaced']} replaced, "
                 f"{c['unchanged']} unchanged, {c['duplicates']} duplicates, {c['errors']} failed; "
                 f"{self.chunks} chunks in {self.seconds:.1f}s ({rate:.1f} chunks/s)"]
        lines += [f"  skipped {e.path}: {e.reason}" for e in self.errors]
        return "\n".join(lines)


def plan(store: Store, collection: str, docs: list[Document]) -> tuple[list[Document], list[str], IngestReport]:
    """Decide per document: add, replace, skip unchanged, skip duplicate."""
    report = IngestReport(collection)
    existing: dict[str, str] = {}  # source -> hash
    hashes: dict[str, str] = {}  # hash -> source
    with store.transaction() as s:
        try:
            col = store.collection(s, collection)
            for src, h in s.execute(select(DocumentRow.source, DocumentRow.doc_hash)
                                    .where(DocumentRow.collection_id == col.id)):
                existing[src] = h
                hashes[h] = src
        except NotFoundError:
            pass
    todo, replace = [], []
    for d in docs:
        if existing.get(d.source) == d.id:
            report.unchanged.append(d.source)
        elif d.id in hashes and hashes[d.id] != d.source:
            report.duplicates.append(f"{d.source} (same text as {hashes[d.id]})")
        else:
            if d.source in existing:
                replace.append(d.source)
                report.replaced.append(d.source)
            else:
                report.added.append(d.source)
            hashes[d.id] = d.source
            todo.append(d)
    return todo, replace, report


# on_progress(stage, done, total): stages "loading" (files), "embedding" (chunks), "indexing".
ProgressFn = Callable[[str, int, int], None]


def ingest_paths(settings: Settings, store: Store, embedder: Embedder, paths: list[Path], collection: str,
                 progress: bool = True, before_commit=None, on_progress: ProgressFn | None = None,
                 ray: str | None = None) -> IngestReport:
    """Load, chunk, embed and commit `paths` into `collection` as one atomic change. ray: the
    address of a Ray cluster that loads, chunks and embeds instead of this process
    (ingest.distributed); the plan and the commit are the same either way."""
    check_name(collection)
    notify = on_progress or (lambda stage, done, total: None)
    t0 = time.perf_counter()
    if not paths:
        raise InputError("nothing to ingest: give at least one file or folder")
    notify("loading", 0, len(paths))
    cluster, chunked = None, {}
    if ray:
        from ingest.distributed import RayWork

        cluster = RayWork(settings, ray)
        pairs, errors = cluster.load(paths)
        docs = [d for d, _ in pairs]
        chunked = {id(d): cs for d, cs in pairs}  # chunked where loaded; only the planned ones are used
    else:
        docs, errors = load_paths(paths)
    with collection_lock(settings.data_dir, collection):
        todo, replace, report = plan(store, collection, docs)
        report.errors = errors
        new_docs = [(d, chunked.get(id(d)) or split_document(d, settings.chunk_size, settings.chunk_overlap))
                    for d in todo]
        texts = [c.text for _, cs in new_docs for c in cs]
        if cluster is not None:
            notify("embedding", 0, len(texts))
            vectors = cluster.embed(texts, embedding_batches(texts, EMBED_BATCH), embedder.name, embedder.dim)
        else:
            vectors = embed_with_progress(embedder, texts, EMBED_BATCH, progress, notify)
        items, pos = [], 0
        for d, cs in new_docs:
            items.append(NewDocument(d, cs, vectors[pos:pos + len(cs)], [tokenize(c.text) for c in cs]))
            pos += len(cs)
        report.chunks = len(texts)
        if items or replace:
            notify("indexing", len(texts), len(texts))
            from ingest.extract import extract

            with extraction(extract if settings.graph else None), storage_full(settings):
                col = apply_changes(store, settings.data_dir, collection, embedder.name, embedder.dim, items,
                                    replace, run_stats={"documents": len(items), "chunks": len(texts)},
                                    before_commit=before_commit)
            report.index_version = col.index_version
    report.seconds = time.perf_counter() - t0
    return report


@contextmanager
def storage_full(settings: Settings):
    """A disk that fills up while the new version is written or committed: the commit is
    rolled back (the previous version stays), and the error says so and where space is short.
    SQLite's write-ahead log keeps the rolled-back pages' space until the database's
    connections close (the process ends)."""
    import errno
    import shutil

    from sqlalchemy.exc import OperationalError

    try:
        yield
    except (OSError, OperationalError) as e:
        full = getattr(e, "errno", None) == errno.ENOSPC or "disk is full" in str(e) or "No space left" in str(e)
        if not full:
            raise
        free = shutil.disk_usage(settings.data_dir).free / 1e6
        raise StorageFullError(f"the disk of {settings.data_dir} filled up ({free:.1f} MB free now): nothing was "
                               "committed, the collection is as it was; free space or move RAG_DATA_DIR, "
                               "then ingest again") from None


def embed_with_progress(embedder: Embedder, texts: list[str], batch: int, progress: bool,
                        notify: ProgressFn | None = None):
    import numpy as np

    out = np.zeros((len(texts), embedder.dim), np.float32)
    with tqdm(total=len(texts), desc="embedding", unit="chunk", disable=not progress or not texts) as bar:
        done = 0
        for rows in embedding_batches(texts, batch):
            out[rows] = embedder.embed_passages([texts[j] for j in rows])
            bar.update(len(rows))
            done += len(rows)
            if notify:
                notify("embedding", done, len(texts))
    return out


def embedding_batches(texts: list[str], batch: int) -> list[list[int]]:
    """The texts' positions in embedding batches, shortest first, so each batch holds texts of
    similar length and little of it is padding (an encoder pads a batch to its longest text);
    the rows go back to the texts' order. The local and the Ray path use the same batches."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[i:i + batch] for i in range(0, len(order), batch)]


def delete_documents(settings: Settings, store: Store, ref: str, collection: str) -> list[str]:
    """Remove documents named by source path, record id or content-hash prefix, from every
    index and the database. Returns the removed sources."""
    check_name(collection)
    candidates = [ref]
    p = Path(ref)
    if p.exists():
        candidates.insert(0, str(p.resolve()))
    with collection_lock(settings.data_dir, collection):
        with store.transaction() as s:
            col = store.collection(s, collection)
            sources: list[str] = []
            for c in candidates:
                sources = [d.source for d in store.find_documents(s, col.id, c)]
                if sources:
                    break
            embedder, dim = col.embedder, col.dim
        if not sources:
            raise NotFoundError(f"no document matching {ref!r} in collection {collection!r}; "
                                f"list them with: rag docs --collection {collection}")
        apply_changes(store, settings.data_dir, collection, embedder, dim, [], sources)
    return sources
