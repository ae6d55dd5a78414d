"""`rag ingest --ray`: the loading, chunking and embedding of an ingest spread over a Ray
cluster with Ray Data; the plan and the commit stay on the driver, so a collection still
changes in one atomic step (ingest.build.ingest_paths).

- Files are loaded and chunked by Ray Data tasks, one file per row (the files must be at the
  same path on every node: a shared folder). The results come back in the order of the files,
  so documents, errors and chunk ids are those of a local run.
- Chunks are embedded by actors that each hold one loaded embedder (`map_batches` with a class),
  one batch per row: the driver forms the batches exactly as the local path does (shortest text
  first, EMBED_BATCH per call), so each vector is computed from the same batch as locally.
- A worker that dies is retried by Ray Data (tasks and actors are restarted); when it cannot
  recover, the ingest raises before the commit and the collection stays as it was."""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np

from ingest.chunk import split_document
from ingest.load import LoadError, iter_files, load_paths
from rag.cluster import connect, cpus_each, workers
from rag.config import Settings
from rag.types import Chunk, Document


def _load_and_chunk(row: dict, chunk_size: int, chunk_overlap: int) -> dict:
    """One file: its documents and their chunks, or its error, as JSON (Ray Data rows hold
    plain values)."""
    docs, errors = load_paths([Path(row["path"])])
    out = [{"doc": asdict(d), "chunks": [asdict(c) for c in split_document(d, chunk_size, chunk_overlap)]}
           for d in docs]
    return {"i": row["i"], "docs": json.dumps(out, ensure_ascii=False),
            "errors": json.dumps([asdict(e) for e in errors], ensure_ascii=False)}


class _Embed:
    """A Ray Data actor: one embedder, loaded once, computing one driver-formed batch per row."""

    def __init__(self, settings: Settings, embedder: str):
        from rag.models.embed import make_embedder

        self.embedder = make_embedder(embedder, settings.threads, cache_dir=settings.models_path)

    def __call__(self, batch: dict) -> dict:
        rows, vectors = [], []
        for ids, texts in zip(batch["ids"], batch["texts"]):
            rows.append(np.asarray(ids, np.int64))
            vectors.append(self.embedder.embed_passages([str(t) for t in texts]))
        return {"i": np.concatenate(rows), "vector": np.concatenate(vectors).astype(np.float32)}


class RayWork:
    """The loading, chunking and embedding of ingest.build.ingest_paths, on a Ray cluster."""

    def __init__(self, settings: Settings, address: str):
        import logging

        self.settings = settings
        self.ray = connect(address)
        self.workers = workers(self.ray)
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its progress bars stay; its log lines go

    def load(self, paths: list[Path]) -> tuple[list[tuple[Document, list[Chunk]]], list[LoadError]]:
        files = [str(p) for p in iter_files(paths)]
        if not files:
            return [], []
        ds = self.ray.data.from_items([{"i": i, "path": f} for i, f in enumerate(files)],
                                      override_num_blocks=min(len(files), 4 * self.workers))
        fn = partial(_load_and_chunk, chunk_size=self.settings.chunk_size, chunk_overlap=self.settings.chunk_overlap)
        docs, errors = [], []
        for row in sorted(ds.map(fn).take_all(), key=lambda r: r["i"]):
            for d in json.loads(row["docs"]):
                docs.append((Document(**d["doc"]), [Chunk(**c) for c in d["chunks"]]))
            errors += [LoadError(**e) for e in json.loads(row["errors"])]
        return docs, errors

    def embed(self, texts: list[str], batches: list[list[int]], embedder: str, dim: int) -> np.ndarray:
        out = np.zeros((len(texts), dim), np.float32)
        if not texts:
            return out
        ds = self.ray.data.from_items([{"ids": rows, "texts": [texts[j] for j in rows]} for rows in batches],
                                      override_num_blocks=min(len(batches), 4 * self.workers))
        threads = cpus_each(self.ray, self.workers)
        settings = self.settings.model_copy(update={"threads": threads})
        embedded = ds.map_batches(_Embed, fn_constructor_kwargs={"settings": settings, "embedder": embedder},
                                  batch_size=1, batch_format="numpy", num_cpus=threads,
                                  compute=self.ray.data.ActorPoolStrategy(size=min(self.workers, len(batches))))
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            out[batch["i"]] = batch["vector"]
        return out
