"""The REST API: `rag serve` runs `create_app(Settings())` under uvicorn.

One RagService per app, built in the lifespan with its models loaded (RAG_WARM_MODELS), so
requests never pay a model load. Handlers are plain `def`s: FastAPI runs them in its thread
pool, and the service's shared parts (index cache, decoder) hold their own locks.

Every collection access goes through `Principal.require`, and every passage a response
carries comes from `RagService` calls scoped to that one collection, so a key can never see
another collection's passages. Routes are split by topic: documents and jobs in
rag.api.documents, the OpenAI-compatible endpoint in rag.api.openai, graph and evaluation in
rag.api.extras. OpenAPI docs are at /docs."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field

from starlette.concurrency import run_in_threadpool

from rag.api import admission, documents, extras, openai
from rag.api.admission import CLIENT_GONE, Admission
from rag.api.auth import KeyStore, Principal, RateLimiter
from rag.api.deps import (COLLECTION_PATTERN, SSE, ApiState, ErrorBody, answer_json, errors, hit_json, prepare_ask, principal,
                          sse, state)
from rag.api.jobs import JobManager
from rag.api.metrics import Metrics
from rag.config import Settings
from rag.errors import RagError


SEARCH_SLOTS, SEARCH_QUEUE = 2, 32  # a search embeds one query (tens of ms): more run at once


QUESTION = Field(min_length=1, pattern=r"\S", description="the question, up to RAG_MAX_QUESTION_CHARS characters")


class AskRequest(BaseModel):
    model_config = ConfigDict(strict=True)  # JSON types as the schema states them: "stream": 0 is refused
    question: str = QUESTION
    collection: str = Field(default="default", pattern=COLLECTION_PATTERN, max_length=64)
    stream: bool = False


class SearchRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    question: str = QUESTION
    collection: str = Field(default="default", pattern=COLLECTION_PATTERN, max_length=64)
    k: int = Field(default=0, ge=0, le=50, description="passages to return (0: RAG_TOP_K)")


class KeyRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str = Field(min_length=1, max_length=100)
    rights: dict[Annotated[str, Field(pattern=f"^\\*$|{COLLECTION_PATTERN}", max_length=64)], Literal["read", "write"]] = \
        Field(default_factory=dict, description='{"collection": "read"|"write", "*": ...}',
              json_schema_extra={"additionalProperties": False})  # a key that is no collection name is refused
    admin: bool = False


def stream_answer(st: ApiState, question: str, collection: str) -> Iterator[str]:
    """Server-sent events: `token` events with text pieces, then one `answer` event with the
    checked answer (which may differ from the raw tokens, e.g. when it was withheld)."""
    try:
        for item in st.svc.ask_stream(question, collection):
            if isinstance(item, str):
                yield sse("token", {"type": "token", "text": item})
            else:
                st.metrics.observe_answer(collection, item)
                yield sse("answer", {"type": "answer", "answer": answer_json(item, collection)})
    except RagError as e:
        yield sse("error", {"type": "error", "status": e.http_status, "detail": str(e)})


def error_response(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    """Every error the API returns (ErrorBody): `detail` for people, `error` as OpenAI clients read it."""
    return JSONResponse({"detail": message, "error": {"message": message, "type": kind, "code": status}},
                        status_code=status, headers=headers)


def allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    """Every method some route of this path accepts (the Allow header of a 405)."""
    from starlette.routing import Match

    methods = set()
    for route in app.router.routes:
        if route.matches({**scope, "method": "GET"})[0] != Match.NONE or \
                route.matches({**scope, "method": "POST"})[0] != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def document_limits(app: FastAPI, settings: Settings) -> None:
    """Limits that are settings go into the OpenAPI schema with this app's values."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for model in ("AskRequest", "SearchRequest"):
                schema["components"]["schemas"][model]["properties"]["question"]["maxLength"] = settings.max_question_chars
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def build_state(settings: Settings, metrics: Metrics) -> ApiState:
    from rag.pipeline import RagService

    svc = RagService(settings)
    keys = KeyStore(svc.store)
    if settings.admin_key is not None:
        keys.bootstrap_admin(settings.admin_key.get_secret_value())
    if settings.warm_models:
        svc.warm()  # lazy first use from two request threads at once would race
    return ApiState(settings, svc, keys, RateLimiter(svc.store, settings.rate_limit_per_minute), JobManager(svc.store), metrics,
                    Admission(settings.answer_slots, settings.answer_queue, settings.answer_wait_s),
                    Admission(SEARCH_SLOTS, SEARCH_QUEUE, settings.answer_wait_s, "searches"))


INSTANCE = f"{socket.gethostname()}:{os.getpid()}"  # which process answered (one of several replicas)


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()  # per app, not per process: tests build several apps

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.rag = build_state(settings, metrics)
        yield
        app.state.rag.jobs.shutdown()

    # FastAPIOffline: FastAPI with the Swagger UI and ReDoc assets served from the installed
    # package instead of a CDN, so /docs and /redoc work with no network.
    app = FastAPIOffline(title="rag-offline", version="0.1.0", lifespan=lifespan, responses=errors(400, 401, 403, 404, 429, 503),
                  description="Offline question answering over your documents, with citations and honest "
                              "abstention. Authenticate with `Authorization: Bearer <key>`.")
    document_limits(app, settings)
    app.middleware("http")(metrics.middleware())

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError):
        # One mapping for the whole API; the nested "error" object is what OpenAI clients read.
        status = exc.http_status
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        if getattr(exc, "retry_after", None):  # 429 rate limit, 503 at capacity
            headers["Retry-After"] = str(exc.retry_after)
        return error_response(status, str(exc), type(exc).__name__, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return error_response(exc.status_code, str(exc.detail), "HTTPError", headers)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError):
        # The database is unreachable (restarting, network): a retryable outage, not a bug. The
        # engine's pool checks connections before use, so requests succeed again once it is back.
        return error_response(503, "the database is unavailable; retry shortly", "DatabaseUnavailable",
                              {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # A bug, not a user error: same JSON shape, no internals beyond the type; the traceback goes to the log.
        return error_response(500, f"internal error ({type(exc).__name__}); the API log has the details",
                              "InternalError")

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request):
        st = state(request)
        return {"status": "ok", "backend": st.settings.backend, "model": st.svc.generator.name,
                "collections": len(st.svc.store.collections()), "instance": INSTANCE}

    @app.get("/metrics", tags=["service"], include_in_schema=False)
    def prometheus_metrics(request: Request):
        m = state(request).metrics
        return Response(m.render(), media_type=m.content_type)

    @app.post("/v1/ask", tags=["ask"], responses=SSE)
    async def ask(body: AskRequest, request: Request, stream: bool = False, who: Principal = Depends(principal)):
        """Answer a question from one collection. With `?stream=true` (or `"stream": true`) the
        reply is server-sent events: `token` events, then one `answer` event. At capacity:
        503 with Retry-After."""
        st = state(request)
        q = await run_in_threadpool(prepare_ask, st, who, body.question, body.collection)
        ticket = st.answers.enter()
        if stream or body.stream:
            return StreamingResponse(ticket.guard(stream_answer(st, q, body.collection)), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        answer = await admission.run(request, ticket, st.svc.ask_stream(q, body.collection))
        if answer is None:
            return Response(status_code=CLIENT_GONE)
        st.metrics.observe_answer(body.collection, answer)
        return answer_json(answer, body.collection)

    @app.post("/v1/search", tags=["ask"])
    def search(body: SearchRequest, request: Request, who: Principal = Depends(principal)):
        """Passages only: the retriever's ranking without generation."""
        st = state(request)
        who.require(body.collection, "read")
        with st.searches.enter():
            hits = st.svc.search(body.question, body.collection, body.k or None)
        return {"collection": body.collection, "hits": [hit_json(h) for h in hits]}

    @app.get("/v1/collections", tags=["documents"])
    def collections(request: Request, who: Principal = Depends(principal)):
        """The collections this key may read, with its right on each."""
        rows = state(request).svc.store.collections()
        return {"collections": [{"name": c.name, "embedder": c.embedder, "index_version": c.index_version,
                                 "right": who.right(c.name)} for c in rows if who.can(c.name)],
                "rights": who.rights, "admin": who.admin, "key": who.name}

    @app.post("/v1/keys", tags=["keys"], status_code=201,
              responses={409: {"model": ErrorBody, "description": "a key of that name exists"}})
    def create_key(body: KeyRequest, request: Request, who: Principal = Depends(principal)):
        """Admin only. The key is shown once; only its hash is stored."""
        who.require_admin()
        key = state(request).keys.create(body.name, body.rights, body.admin)
        return {"name": body.name, "key": key, "rights": body.rights, "admin": body.admin}

    @app.get("/v1/keys", tags=["keys"])
    def list_keys(request: Request, who: Principal = Depends(principal)):
        who.require_admin()
        return {"keys": state(request).keys.list()}

    @app.delete("/v1/keys/{name}", tags=["keys"])
    def revoke_key(name: str, request: Request, who: Principal = Depends(principal)):
        who.require_admin()
        state(request).keys.revoke(name)
        return {"revoked": name}

    for module in (documents, openai, extras):
        app.include_router(module.router)
    return app
