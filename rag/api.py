"""The REST API: `rag serve` runs `create_app(Settings())` under uvicorn.

One RagService per app, built in the lifespan with its models loaded (RAG_WARM_MODELS), so
requests never pay a model load. Handlers are plain `def`s: FastAPI runs them in its thread
pool, and the service's shared parts (index cache, decoder) hold their own locks.

Every collection access goes through `Principal.require`, and every passage a response
carries comes from `RagService` calls scoped to that one collection, so a key can never see
another collection's passages. Routes are split by topic: documents and jobs in
rag.api_docs, the OpenAI-compatible endpoint in rag.api_openai, graph and evaluation in
rag.api_extras. OpenAPI docs are at /docs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from rag.api_jobs import JobManager
from rag.api_metrics import Metrics
from rag.auth import ANONYMOUS_ADMIN, KeyStore, Principal, RateLimiter
from rag.config import Settings
from rag.errors import RagError
from rag.types import Answer, Hit


@dataclass
class ApiState:
    settings: object
    svc: object  # rag.pipeline.RagService
    keys: KeyStore
    limiter: RateLimiter
    jobs: JobManager
    metrics: Metrics


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


def answer_json(answer: Answer, collection: str) -> dict:
    d = answer.to_dict()
    d["answer"] = d["text"]
    d["collection"] = collection
    return d


def hit_json(h: Hit) -> dict:
    return {"chunk_id": h.chunk.id, "doc_id": h.chunk.doc_id, "source": h.chunk.source, "title": h.chunk.title,
            "text": h.chunk.text, "start": h.chunk.start, "end": h.chunk.end, "score": h.score, "stage": h.stage}


class AskRequest(BaseModel):
    question: str = Field(description="the question, up to RAG_MAX_QUESTION_CHARS characters")
    collection: str = "default"
    stream: bool = False


class SearchRequest(BaseModel):
    question: str
    collection: str = "default"
    k: int = Field(default=0, ge=0, le=50, description="passages to return (0: RAG_TOP_K)")


class KeyRequest(BaseModel):
    name: str
    rights: dict[str, str] = Field(default_factory=dict, description='{"collection": "read"|"write", "*": ...}')
    admin: bool = False


def prepare_ask(st: ApiState, who: Principal, question: str, collection: str) -> str:
    """Every check that can fail, done before a stream starts (a stream can't change its status)."""
    who.require(collection, "read")
    q = st.svc.check_question(question)
    st.svc.store.get_collection(collection)  # 404 for a missing collection
    return q


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


def build_state(settings: Settings, metrics: Metrics) -> ApiState:
    from rag.pipeline import RagService

    svc = RagService(settings)
    keys = KeyStore(svc.store)
    if settings.admin_key is not None:
        keys.bootstrap_admin(settings.admin_key.get_secret_value())
    if settings.warm_models and hasattr(svc, "warm"):
        svc.warm()  # the pipeline knows every model it uses (reranker, judge, ...)
    elif settings.warm_models:
        # Load every model now; lazy first use from two request threads at once would race.
        for name in {settings.effective_embedder(), *(c.embedder for c in svc.store.collections())}:
            svc.embedder(name).embed_query("warm up")
        from rag.text import tokenize

        tokenize("warm up 준비")  # the Korean morphology model behind BM25 takes seconds to load
        gen = svc.generator
        if hasattr(gen, "load"):
            gen.load()
        if svc.reader is not None:  # English questions are read by it first
            svc.reader.load()
    return ApiState(settings, svc, keys, RateLimiter(settings.rate_limit_per_minute), JobManager(), metrics)


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()  # per app, not per process: tests build several apps

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.rag = build_state(settings, metrics)
        yield
        app.state.rag.jobs.shutdown()

    app = FastAPI(title="rag-offline", version="0.1.0", lifespan=lifespan,
                  description="Offline question answering over your documents, with citations and honest "
                              "abstention. Authenticate with `Authorization: Bearer <key>`.")
    app.middleware("http")(metrics.middleware())

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError):
        # One mapping for the whole API; the nested "error" object is what OpenAI clients read.
        status = exc.http_status
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        if status == 429:
            headers["Retry-After"] = "1"
        body = {"detail": str(exc), "error": {"message": str(exc), "type": type(exc).__name__, "code": status}}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # A bug, not a user error: same JSON shape, no internals beyond the type; the traceback goes to the log.
        msg = f"internal error ({type(exc).__name__}); the API log has the details"
        return JSONResponse({"detail": msg, "error": {"message": msg, "type": "InternalError", "code": 500}},
                            status_code=500)

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request):
        st = state(request)
        return {"status": "ok", "backend": st.settings.backend, "model": st.svc.generator.name,
                "collections": len(st.svc.store.collections())}

    @app.get("/metrics", tags=["service"], include_in_schema=False)
    def prometheus_metrics(request: Request):
        m = state(request).metrics
        return Response(m.render(), media_type=m.content_type)

    @app.post("/v1/ask", tags=["ask"])
    def ask(body: AskRequest, request: Request, stream: bool = False, who: Principal = Depends(principal)):
        """Answer a question from one collection. With `?stream=true` (or `"stream": true`) the
        reply is server-sent events: `token` events, then one `answer` event."""
        st = state(request)
        q = prepare_ask(st, who, body.question, body.collection)
        if stream or body.stream:
            return StreamingResponse(stream_answer(st, q, body.collection), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        answer = st.svc.ask(q, body.collection)
        st.metrics.observe_answer(body.collection, answer)
        return answer_json(answer, body.collection)

    @app.post("/v1/search", tags=["ask"])
    def search(body: SearchRequest, request: Request, who: Principal = Depends(principal)):
        """Passages only: the retriever's ranking without generation."""
        st = state(request)
        who.require(body.collection, "read")
        hits = st.svc.search(body.question, body.collection, body.k or None)
        return {"collection": body.collection, "hits": [hit_json(h) for h in hits]}

    @app.get("/v1/collections", tags=["documents"])
    def collections(request: Request, who: Principal = Depends(principal)):
        """The collections this key may read, with its right on each."""
        rows = state(request).svc.store.collections()
        return {"collections": [{"name": c.name, "embedder": c.embedder, "index_version": c.index_version,
                                 "right": who.right(c.name)} for c in rows if who.can(c.name)],
                "rights": who.rights, "admin": who.admin, "key": who.name}

    @app.post("/v1/keys", tags=["keys"], status_code=201)
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

    from rag import api_docs, api_extras, api_openai

    for module in (api_docs, api_openai, api_extras):
        app.include_router(module.router)
    return app
