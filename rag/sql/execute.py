"""Read-only connections to a user's database, and the one place that executes their SQL.

Defence in depth, because a validator can have bugs:
- SQLite is opened with a `file:...?mode=ro` URI, so the OS-level handle cannot write; while a
  query runs, an authorizer allows only SELECT, column reads, recursive CTEs and allowlisted
  functions (no ATTACH, PRAGMA, writes, load_extension), and a progress handler interrupts
  it past the timeout.
- PostgreSQL runs each query in a `READ ONLY` transaction with `SET LOCAL statement_timeout`,
  then rolls back. Use a database role with SELECT rights only as well: that is the real wall.
- At most `max_rows + 1` rows are fetched, whatever the query asks for.

SQL text goes to the driver untouched by SQLAlchemy's text() (which would read ':x' as a bind
parameter); SQLAlchemy provides the engine, pooling and schema inspection.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from rag.errors import InputError, RagError
from rag.sql.guard import ALLOWED_FUNCTIONS


class QueryError(RagError, RuntimeError):
    """A validated query failed in the database (bad column, timeout, ...)."""

    http_status = 400


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    truncated: bool  # more rows existed than were fetched
    elapsed_s: float


_SQLITE_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                           getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
# Names SQLite itself reports for functions sqlglot knows under another key.
_SQLITE_EXTRA_FUNCTIONS = frozenset({"like", "glob", "substr", "strftime", "ifnull", "iif", "coalesce",
                                     "group_concat", "printf", "date", "datetime", "julianday"})


def _authorize(action, arg1, arg2, _db, _trigger):  # noqa: ANN001 - sqlite3 callback signature
    if action not in _SQLITE_ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_READ and (arg1 or "").lower().startswith("sqlite_"):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION:
        name = (arg2 or "").lower()
        if name not in ALLOWED_FUNCTIONS and name not in _SQLITE_EXTRA_FUNCTIONS:
            return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL or a bare path; None for other databases."""
    if "://" not in url:
        return Path(url).expanduser().resolve()
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    if not u.database or u.database == ":memory:":
        raise InputError("an in-memory SQLite database cannot be registered; give a file path")
    return Path(u.database).expanduser().resolve()


class ReadOnlyDatabase:
    """A registered database, opened read-only. Cheap to build; connects on first use."""

    def __init__(self, url: str, timeout_s: float = 5.0, max_rows: int = 1000):
        self.url = url
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.path = sqlite_path(url)
        if self.path is not None:
            if not self.path.is_file():
                raise InputError(f"SQLite file {self.path} does not exist")
            self.dialect = "sqlite"
            uri = f"file:{quote(str(self.path))}?mode=ro"
            # NullPool: a fresh read-only handle per query costs ~0.1 ms and sees the file as it is now.
            self.engine = create_engine("sqlite://", poolclass=NullPool, creator=lambda: sqlite3.connect(
                uri, uri=True, check_same_thread=False))
        else:
            backend = make_url(url).get_backend_name()
            if backend != "postgresql":
                raise InputError(f"unsupported database {backend!r}: use a SQLite file or a postgresql:// URL")
            self.dialect = "postgres"
            self.engine = create_engine(url, pool_pre_ping=True)

    def execute(self, sql: str, max_rows: int | None = None) -> QueryResult:
        """Run one statement that `validate_sql` already accepted. Never commits."""
        limit = max_rows or self.max_rows
        t0 = time.perf_counter()
        with self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            try:
                if self.dialect == "sqlite":
                    columns, rows = self._run_sqlite(raw, sql, limit)
                else:
                    columns, rows = self._run_postgres(raw, sql, limit)
            except QueryError:
                raise
            except Exception as e:  # noqa: BLE001 - any driver error is the query's fault here
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                if "interrupted" in msg or "statement timeout" in msg:
                    msg = f"the query ran longer than {self.timeout_s:g} s and was stopped"
                raise QueryError(msg) from e
        return QueryResult(tuple(columns), tuple(tuple(r) for r in rows[:limit]), len(rows) > limit,
                           time.perf_counter() - t0)

    def _run_sqlite(self, raw: sqlite3.Connection, sql: str, limit: int):
        deadline = time.monotonic() + self.timeout_s
        raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 2000)
        raw.set_authorizer(_authorize)
        try:
            cur = raw.cursor()
            cur.execute(sql)
            columns = [d[0] for d in cur.description or ()]
            rows = cur.fetchmany(limit + 1)
            cur.close()
            return columns, rows
        finally:
            raw.set_authorizer(None)
            raw.set_progress_handler(None, 0)
            raw.rollback()

    def _run_postgres(self, raw, sql: str, limit: int):
        try:
            cur = raw.cursor()
            cur.execute("SET TRANSACTION READ ONLY")  # first statement of the implicit transaction
            cur.execute(f"SET LOCAL statement_timeout = {max(1, int(self.timeout_s * 1000))}")
            cur.execute(sql)
            columns = [d[0] for d in cur.description or ()]
            rows = cur.fetchmany(limit + 1)
            return columns, rows
        finally:
            raw.rollback()

    def dispose(self) -> None:
        self.engine.dispose()
