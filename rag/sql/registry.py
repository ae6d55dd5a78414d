"""Registered databases per collection (a table in the metadata DB).

`add_database` opens the database read-only, introspects its schema and stores name, URL and
schema (`rag db add`, rag.cli.db). A collection with a registered database sends database
questions there (`ask_database`, called by RagService); other collections never pay for it.

Limits: the URL is stored as given, so a PostgreSQL password in it sits in the metadata DB;
prefer a read-only role with a password from ~/.pgpass or PGPASSWORD. The schema is a
snapshot taken at `add` time: re-run `rag db add` after the schema changes.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, Integer, String, UniqueConstraint, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Mapped, mapped_column

from rag.errors import InputError, NotFoundError
from rag.store.metadata import Base, CollectionRow, Store

_NAME = re.compile(r"^[\w][\w.\-]{0,63}$")


class SqlDatabaseRow(Base):
    __tablename__ = "sql_databases"
    __table_args__ = (UniqueConstraint("collection", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection: Mapped[str] = mapped_column(String(200), index=True)  # a name: documents are optional
    name: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2000))
    dialect: Mapped[str] = mapped_column(String(20))
    schema: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=lambda: datetime.now(timezone.utc))


def _ensure(store: Store) -> None:
    SqlDatabaseRow.__table__.create(store.engine, checkfirst=True)


def add_database(store: Store, settings, name: str, url: str, collection: str = "default") -> SqlDatabaseRow:
    """Register (or re-register) a database: it must open read-only and have at least one table."""
    from rag.sql.execute import ReadOnlyDatabase
    from rag.sql.schema import introspect

    if not _NAME.match(name or ""):
        raise InputError(f"invalid database name {name!r}: use up to 64 letters, digits, '_', '-' or '.'")
    db = ReadOnlyDatabase(url, settings.sql_timeout_s, settings.sql_max_rows)
    try:
        schema = introspect(db)
    finally:
        db.dispose()
    if not schema.tables:
        raise InputError(f"database {name!r} has no tables the connection can see")
    _ensure(store)
    stored_url = str(db.path) if db.path is not None else url
    with store.transaction() as s:
        row = s.scalar(select(SqlDatabaseRow).where(SqlDatabaseRow.collection == collection,
                                                    SqlDatabaseRow.name == name))
        if row is None:
            row = SqlDatabaseRow(collection=collection, name=name)
            s.add(row)
        row.url, row.dialect, row.schema = stored_url, schema.dialect, schema.to_dict()
        s.flush()
    return row


def list_databases(store: Store, collection: str | None = None) -> list[SqlDatabaseRow]:
    _ensure(store)
    q = select(SqlDatabaseRow).order_by(SqlDatabaseRow.collection, SqlDatabaseRow.name)
    if collection is not None:
        q = q.where(SqlDatabaseRow.collection == collection)
    with store.transaction() as s:
        return list(s.scalars(q))


def get_database(store: Store, name: str, collection: str = "default") -> SqlDatabaseRow:
    rows = [r for r in list_databases(store, collection) if r.name == name]
    if not rows:
        raise NotFoundError(f"no database {name!r} in collection {collection!r}; register it with "
                            f"rag db add {name} URL --collection {collection}")
    return rows[0]


def has_documents(store: Store, collection: str) -> bool:
    with store.transaction() as s:
        row = s.scalar(select(CollectionRow).where(CollectionRow.name == collection))
        return row is not None and row.index_version > 0


def masked(url: str) -> str:
    return url if "://" not in url else make_url(url).render_as_string(hide_password=True)


# -- used by RagService -----------------------------------------------------------------------
def sql_generator(service):
    """The decoder that writes SQL: the service's own unless RAG_SQL_DECODER names another, or
    the service's carries a LoRA adapter trained for document answers (then a plain one)."""
    s = service.settings
    if s.backend == "fake":
        return service.generator
    name = s.sql_decoder or s.decoder
    if name == s.decoder and service.generator.name == s.decoder:
        return service.generator
    if getattr(service, "_sql_generator", None) is None:
        from rag.models.llama import serving_generator

        service._sql_generator = serving_generator(name, s.models_path, None, s.threads)
    return service._sql_generator


def answer_from_database(service, question: str, collection: str, name: str | None = None, rows=None):
    """Answer `question` from the collection's database (the named one, else the first
    whose schema the question matches best). Returns None when none is registered."""
    from rag.sql.agent import SqlAgent, answer_from_outcome
    from rag.sql.execute import ReadOnlyDatabase
    from rag.sql.schema import DbSchema, table_score

    rows = list_databases(service.store, collection) if rows is None else rows
    if name is not None:
        rows = [r for r in rows if r.name == name]
    if not rows:
        return None
    schemas = {r.name: DbSchema.from_dict(r.schema) for r in rows}
    row = max(rows, key=lambda r: max((table_score(question, t) for t in schemas[r.name].tables), default=0))
    s = service.settings
    db = ReadOnlyDatabase(row.url, s.sql_timeout_s, s.sql_max_rows)
    try:
        gen = sql_generator(service)
        outcome = SqlAgent(gen, db, schemas[row.name]).run(question)
        return answer_from_outcome(question, outcome, row.name, gen)
    finally:
        db.dispose()


def ask_database(service, question: str, collection: str):
    """The database's answer when the collection has a registered database and the router
    sends the question there, else None (the documents answer). "both" tries the database
    first and falls back to the documents when it finds nothing."""
    from rag.sql.agent import route
    from rag.sql.schema import DbSchema, table_score

    rows = list_databases(service.store, collection)
    if not rows:
        return None
    schemas = [DbSchema.from_dict(r.schema) for r in rows]
    best = max(schemas, key=lambda sc: max((table_score(question, t) for t in sc.tables), default=0))
    where = route(question, best, has_documents(service.store, collection))
    if where == "documents":
        return None
    answer = answer_from_database(service, question, collection, rows=rows)
    return answer if answer is not None and (not answer.abstained or where == "database") else None
