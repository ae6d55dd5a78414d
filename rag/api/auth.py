"""API keys, rights per collection, and a rate limit per key, for the REST API.

Keys are random 32-byte tokens shown once at creation; only their sha256 is stored (a
slow password hash buys nothing for high-entropy random tokens and would cost every
request). Each key holds rights on named collections: "read" (ask, search, list) or
"write" (also upload, ingest, delete). An admin key may do everything, including
managing keys. `RAG_ADMIN_KEY` bootstraps the first admin at start-up.

Limits: the rate limiter keeps its state in the metadata database, so API replicas over one
database share each key's allowance."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, case, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from rag.store.collection import check_name
from rag.errors import ForbiddenError, InputError, NotFoundError, RagError, UnauthorizedError
from rag.store.metadata import Base, Store

Right = Literal["read", "write"]
WILDCARD = "*"  # a right on every collection, present and future


class ConflictError(RagError, ValueError):
    http_status = 409


class RateLimitError(RagError, RuntimeError):
    http_status = 429

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    rights: Mapped[dict] = mapped_column(JSON, default=dict)  # collection -> "read" | "write"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 default=lambda: datetime.now(timezone.utc))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may touch. Checked on every collection access."""

    name: str
    admin: bool = False
    rights: dict[str, str] = field(default_factory=dict)

    def right(self, collection: str) -> str | None:
        if self.admin:
            return "write"
        return self.rights.get(collection) or self.rights.get(WILDCARD)

    def can(self, collection: str, need: Right = "read") -> bool:
        have = self.right(collection)
        return have == "write" or (have == "read" and need == "read")

    def require(self, collection: str, need: Right = "read") -> str:
        if not self.can(collection, need):
            raise ForbiddenError(f"key {self.name!r} has no {need} right on collection {collection!r}; "
                                 f"ask an admin to grant it (POST /v1/keys)")
        return collection

    def require_admin(self) -> None:
        if not self.admin:
            raise ForbiddenError(f"key {self.name!r} is not an admin key")


ANONYMOUS_ADMIN = Principal("anonymous", admin=True)  # only when RAG_REQUIRE_AUTH=false


def check_rights(rights: dict) -> dict[str, str]:
    out = {}
    for col, r in (rights or {}).items():
        if r not in ("read", "write"):
            raise InputError(f"right {r!r} on {col!r} must be 'read' or 'write'")
        out[col if col == WILDCARD else check_name(col)] = r
    return out


class KeyStore:
    """Create, list, revoke and verify keys in the metadata database."""

    def __init__(self, store: Store):
        self.store = store
        Base.metadata.create_all(store.engine, tables=[ApiKeyRow.__table__])

    def bootstrap_admin(self, key: str) -> None:
        """Make sure `key` is a valid admin key (named 'admin'); a changed RAG_ADMIN_KEY replaces the old one."""
        with self.store.transaction() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.name == "admin"))
            if row is None:
                s.add(ApiKeyRow(name="admin", key_hash=hash_key(key), admin=True, rights={}))
            else:
                row.key_hash, row.admin = hash_key(key), True

    def create(self, name: str, rights: dict, admin: bool = False) -> str:
        if not name or len(name) > 100:
            raise InputError("a key needs a name of 1 to 100 characters")
        rights = check_rights(rights)
        key = "rag_" + secrets.token_urlsafe(32)
        with self.store.transaction() as s:
            if s.scalar(select(ApiKeyRow.id).where(ApiKeyRow.name == name)) is not None:
                raise ConflictError(f"a key named {name!r} exists; revoke it first or choose another name")
            s.add(ApiKeyRow(name=name, key_hash=hash_key(key), admin=admin, rights=rights))
        return key

    def list(self) -> list[dict]:
        with self.store.transaction() as s:
            rows = s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.name))
            return [{"name": r.name, "admin": r.admin, "rights": r.rights,
                     "created_at": r.created_at.isoformat() if r.created_at else None} for r in rows]

    def revoke(self, name: str) -> None:
        with self.store.transaction() as s:
            if s.execute(delete(ApiKeyRow).where(ApiKeyRow.name == name)).rowcount == 0:
                raise NotFoundError(f"no key named {name!r}")

    def verify(self, key: str | None) -> Principal:
        if not key:
            raise UnauthorizedError("missing API key: send the header 'Authorization: Bearer <key>'")
        digest = hash_key(key)
        with self.store.transaction() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
            # compare_digest after the lookup keeps the check honest if the lookup ever changes
            if row is None or not hmac.compare_digest(row.key_hash, digest):
                raise UnauthorizedError("invalid API key")
            return Principal(row.name, row.admin, dict(row.rights or {}))


class RateLimitRow(Base):
    """One row per key: the limiter's state, shared by every API process on the database."""

    __tablename__ = "rate_limits"
    who: Mapped[str] = mapped_column(String(100), primary_key=True)
    tat: Mapped[float] = mapped_column(Float)  # theoretical arrival time of the next request (epoch s)


class RateLimiter:
    """`per_minute` requests a minute per key, bursts up to the same number, counted in the
    metadata database so that every replica of the API (`rag serve --replicas`) draws on the
    same allowance.

    The generic cell rate algorithm (GCRA): one number per key, the time at which its bucket
    would be full again; a request moves it on by 60/per_minute seconds and is refused when
    that lands more than a whole bucket ahead of now. Allowing and counting are one UPSERT, so
    two processes cannot both take the last token. The clock is the wall clock (time.time),
    the one the replicas share."""

    def __init__(self, store: Store, per_minute: int, clock=time.time):
        self.store = store
        self.interval = 60.0 / per_minute
        self.capacity = per_minute
        self.clock = clock
        Base.metadata.create_all(store.engine, tables=[RateLimitRow.__table__])

    def check(self, who: str) -> None:
        now = self.clock()
        t = RateLimitRow.__table__
        start = case((t.c.tat > now, t.c.tat), else_=now)  # max(tat, now) in SQLite and PostgreSQL alike
        insert = (sqlite_insert if self.store.engine.dialect.name == "sqlite" else pg_insert)(t)
        step = insert.values(who=who, tat=now + self.interval).on_conflict_do_update(
            index_elements=[t.c.who], set_={"tat": start + self.interval},
            where=start + self.interval - now <= self.capacity * self.interval).returning(t.c.tat)
        with self.store.transaction() as s:
            if s.execute(step).first() is not None:
                return
            tat = s.scalar(select(t.c.tat).where(t.c.who == who))
        wait = max(tat + self.interval - now - self.capacity * self.interval, 0.0)
        raise RateLimitError(f"rate limit of {self.capacity} requests a minute exceeded for "
                             f"key {who!r}; retry in {wait:.1f}s", retry_after=max(1, math.ceil(wait)))
