"""What every route of the REST API shares: the app's state, the caller (`principal`, which
also spends their rate limit), and the JSON shapes of answers and passages. The routers
(rag.api.app, documents, extras, openai) import it; it imports none of them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from rag.api.admission import Admission
from rag.api.auth import ANONYMOUS_ADMIN, KeyStore, Principal, RateLimiter
from rag.api.jobs import JobManager
from rag.api.metrics import Metrics
from rag.types import Answer, Hit


# -- the contract every route shares (OpenAPI), so clients generated from the schema work ---------
# Names as the code checks them (rag.store.collection.check_name; rag.api.documents.safe_target).
# No look-ahead (pydantic's regex engine has none): "no '..'" is "a dot only before another
# character"; the lengths are max_length beside them.
COLLECTION_PATTERN = r"^\w(?:[\w\-]|\.[\w\-])*\.?$"  # up to 64
FILE_NAME_PATTERN = r"^[\w\-()+, ](?:[\w\-()+, ]|\.[\w\-()+, ])*\.?$"  # up to 200, no leading dot
Collection = Annotated[str, Path(pattern=COLLECTION_PATTERN, max_length=64, description="a collection name")]


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int


class ErrorBody(BaseModel):
    """Every error: `detail` for people, `error` as OpenAI clients read it."""
    detail: str
    error: ErrorDetail


_STATUS = {400: "bad input: the message says what to change", 401: "missing or invalid API key",
           403: "the key has no right on this collection (or is not an admin)", 404: "not found",
           413: "too large (RAG_MAX_UPLOAD_MB, RAG_MAX_UPLOAD_FILES)", 415: "file type not supported",
           429: "rate limit of the key exceeded (RAG_RATE_LIMIT_PER_MINUTE)",
           503: "at capacity (RAG_ANSWER_SLOTS, RAG_ANSWER_QUEUE) or a model is unavailable"}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def errors(*codes: int) -> dict:
    """OpenAPI `responses` for these error statuses (429 and 503 with Retry-After)."""
    return {c: {"model": ErrorBody, "description": _STATUS[c], **({"headers": _RETRY_AFTER} if c in (429, 503) else {})}
            for c in codes}


SSE = {200: {"content": {"text/event-stream": {"schema": {
    "type": "object", "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string", "description": "JSON, or [DONE]"}}}}},
    "description": "JSON, or server-sent events when streaming"}}


@dataclass
class ApiState:
    settings: object
    svc: object  # rag.pipeline.RagService
    keys: KeyStore
    limiter: RateLimiter
    jobs: JobManager
    metrics: Metrics
    answers: Admission  # ask, chat completions: the decoder's work
    searches: Admission  # search: the query embedder's


def state(request: Request) -> ApiState:
    return request.app.state.rag


_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer <key>`")


def principal(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """Who is calling (401 without a valid key); also spends one token of their rate limit."""
    st = state(request)
    if not st.settings.require_auth:
        return ANONYMOUS_ADMIN
    who = st.keys.verify(cred.credentials if cred else None)
    st.limiter.check(who.name)
    return who


def sse(event: str, payload: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


def display_source(source: str) -> str:
    """What a caller calls a document: its file name, never a path on the server (files are
    recorded by absolute path); a JSONL corpus record keeps its record id."""
    return PurePosixPath(source).name if source.startswith("/") else source


def answer_json(answer: Answer, collection: str) -> dict:
    d = answer.to_dict()
    d["answer"] = d["text"]
    d["collection"] = collection
    for item in [*d["citations"], *d["context"], *d["trace"].get("withheld_citations", [])]:
        item["source"] = display_source(item["source"])
    if "retrieved_sources" in d["trace"]:
        d["trace"]["retrieved_sources"] = [display_source(s) for s in d["trace"]["retrieved_sources"]]
    return d


def hit_json(h: Hit) -> dict:
    return {"chunk_id": h.chunk.id, "doc_id": h.chunk.doc_id, "source": display_source(h.chunk.source),
            "title": h.chunk.title, "text": h.chunk.text, "start": h.chunk.start, "end": h.chunk.end,
            "score": h.score, "stage": h.stage}


def prepare_ask(st: ApiState, who: Principal, question: str, collection: str) -> str:
    """Every check that can fail, done before a stream starts (a stream can't change its status)."""
    who.require(collection, "read")
    q = st.svc.check_question(question)
    st.svc.store.get_collection(collection)  # 404 for a missing collection
    return q
