"""Metadata in SQL through SQLAlchemy: collections, documents, chunks and ingest runs.

SQLite by default (WAL mode, so questions are answered while an ingest writes), PostgreSQL
by URL. The database is the source of truth: index folders are derived from it and the
collection row names the index version that matches the committed rows, so one
transaction switches documents, chunks and indexes together (see ingest.build)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from sqlalchemy import (JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine,
                        event, select)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from rag.errors import ConfigError, NotFoundError
from rag.types import Chunk, Document


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class CollectionRow(Base):
    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    embedder: Mapped[str] = mapped_column(String(50))
    dim: Mapped[int] = mapped_column(Integer)
    index_version: Mapped[int] = mapped_column(Integer, default=0)  # 0: nothing indexed yet
    settings: Mapped[dict] = mapped_column(JSON, default=dict)  # e.g. the fitted abstention threshold
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("collection_id", "source"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    doc_hash: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(1000))
    title: Mapped[str] = mapped_column(String(1000), default="")
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    chunks: Mapped[list["ChunkRow"]] = relationship(back_populates="document", cascade="all, delete-orphan",
                                                    passive_deletes=True)


class ChunkRow(Base):
    __tablename__ = "chunks"
    # AUTOINCREMENT: a deleted chunk's id is never reused, so a stale index can't point
    # at someone else's text.
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[int] = mapped_column(Integer, index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[str] = mapped_column(Text, default="[]")  # BM25 tokens, JSON, so rebuilds skip tokenising
    document: Mapped[DocumentRow] = relationship(back_populates="chunks")


class IngestRunRow(Base):
    __tablename__ = "ingest_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    stats: Mapped[dict] = mapped_column(JSON, default=dict)


def make_engine(url: str):
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # noqa: ANN001
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    """Typed access to the metadata tables. Every method takes or opens a session; writes
    that must land together share one `transaction()`."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    # -- collections -----------------------------------------------------------------------
    def collection(self, s: Session, name: str, embedder: str | None = None, dim: int | None = None,
                   create: bool = False) -> CollectionRow:
        row = s.scalar(select(CollectionRow).where(CollectionRow.name == name))
        if row is None:
            if not create:
                raise NotFoundError(f"collection {name!r} does not exist; ingest documents into it first "
                                    f"(rag ingest PATH --collection {name})")
            row = CollectionRow(name=name, embedder=embedder, dim=dim, index_version=0, settings={})
            s.add(row)
            s.flush()
        elif embedder is not None and row.embedder != embedder:
            raise ConfigError(f"collection {name!r} was built with embedder {row.embedder!r} but "
                              f"{embedder!r} is configured; set RAG_EMBEDDER={row.embedder} or use "
                              f"another collection")
        return row

    def collections(self) -> list[CollectionRow]:
        with self.transaction() as s:
            return list(s.scalars(select(CollectionRow).order_by(CollectionRow.name)))

    def get_collection(self, name: str) -> CollectionRow:
        with self.transaction() as s:
            return self.collection(s, name)

    def update_settings(self, name: str, **values) -> None:
        with self.transaction() as s:
            row = self.collection(s, name)
            row.settings = {**(row.settings or {}), **values}

    # -- documents and chunks --------------------------------------------------------------
    def documents(self, collection: str) -> list[DocumentRow]:
        with self.transaction() as s:
            col = self.collection(s, collection)
            return list(s.scalars(select(DocumentRow).where(DocumentRow.collection_id == col.id)
                                  .order_by(DocumentRow.source)))

    def find_documents(self, s: Session, collection_id: int, ref: str) -> list[DocumentRow]:
        """Documents matching a content-hash prefix (at least 8 characters) or a source."""
        q = select(DocumentRow).where(DocumentRow.collection_id == collection_id)
        by_source = list(s.scalars(q.where(DocumentRow.source == ref)))
        if by_source or len(ref) < 8:
            return by_source
        return list(s.scalars(q.where(DocumentRow.doc_hash.startswith(ref.lower()))))

    def chunks(self, collection: str, ids: Iterable[int]) -> dict[int, Chunk]:
        """Chunks by id, restricted to one collection: ids from another collection are
        silently absent, never returned."""
        ids = list(ids)
        if not ids:
            return {}
        with self.transaction() as s:
            col = self.collection(s, collection)
            rows = s.execute(
                select(ChunkRow, DocumentRow.doc_hash, DocumentRow.source, DocumentRow.title)
                .join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
                .where(ChunkRow.id.in_(ids), ChunkRow.collection_id == col.id)
            ).all()
        return {c.id: to_chunk(c, h, src, title) for c, h, src, title in rows}

    def chunk_tokens(self, s: Session, collection_id: int) -> tuple[list[int], list[list[str]]]:
        rows = s.execute(select(ChunkRow.id, ChunkRow.tokens).where(ChunkRow.collection_id == collection_id)
                         .order_by(ChunkRow.id)).all()
        return [r[0] for r in rows], [json.loads(r[1]) for r in rows]


def to_chunk(c: ChunkRow, doc_hash: str, source: str, title: str) -> Chunk:
    return Chunk(c.id, doc_hash, c.text, c.start, c.end, c.ordinal, source, title)


def to_document(d: DocumentRow) -> Document:
    return Document(d.doc_hash, d.source, d.title, d.text, dict(d.meta or {}))
