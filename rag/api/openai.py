"""OpenAI-compatible chat completions, so existing OpenAI clients and chat UIs work unchanged.

`model` names the collection (GET /v1/models lists those the key may read). The question is
the last user message; earlier turns are not used for retrieval (deliberate: a follow-up
like "and when?" retrieves poorly on its own, and rewriting it needs a model call we don't
make yet). Citations are appended to the message text as a "Sources:" list and returned
in an extra `citations` field (and `rag` with abstention, verdicts and timings); clients
that don't know these fields ignore them.

Streaming sends the decoder's tokens as they come; the pipeline's checks run after the
last token, so when the checked answer differs (withheld as unsupported) a final delta
says so and gives the checked text."""

from __future__ import annotations

import json
import time
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from rag.api import admission
from rag.api.deps import COLLECTION_PATTERN, SSE, answer_json, display_source, prepare_ask, principal, state
from rag.api.auth import Principal
from rag.errors import InputError, RagError
from rag.types import Answer

router = APIRouter(tags=["openai"])


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: str
    content: str | list[ContentPart] | None = None


# The schema's way of saying "some user message has text" (the question; the API takes the last
# such message), so that every request the schema allows is one the API answers.
_TEXT = {"type": "string", "pattern": r"\S"}
_A_QUESTION = {"type": "object", "required": ["role", "content"], "properties": {
    "role": {"const": "user"},
    "content": {"anyOf": [_TEXT, {"type": "array", "contains": {
        "type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": _TEXT}}}]}}}


class ChatRequest(BaseModel):
    # temperature, top_p, ... are accepted and ignored (greedy decoding); strict: "stream": 0 is not a bool
    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(description="the collection to answer from", pattern=COLLECTION_PATTERN, max_length=64)
    messages: list[ChatMessage] = Field(min_length=1, description="the last user message with text is the question",
                                        json_schema_extra={"contains": _A_QUESTION})
    stream: bool = False


def last_question(messages: list[ChatMessage]) -> str:
    for m in reversed(messages):
        if m.role == "user":
            if isinstance(m.content, list):  # content parts: keep the text ones
                text = " ".join(p.text or "" for p in m.content if p.type == "text" and p.text)
            else:
                text = m.content or ""
            if text.strip():
                return text
    raise InputError("no user message with text: the last user message with text is the question")


def sources_text(answer: Answer) -> str:
    """What a client that reads only the message content must see: the sources, and a caveat
    answer's low-confidence note."""
    note = f"\n\nLow confidence: {answer.trace['caveat']}" if answer.level == "caveat" else ""
    if not answer.citations:
        return note
    lines = [f"[{c.marker}] {display_source(c.source)}: \"{c.quote}\"" for c in answer.citations]
    return note + "\n\nSources:\n" + "\n".join(lines)


def extras(answer: Answer, collection: str) -> dict:
    d = answer_json(answer, collection)
    return {"citations": d["citations"],
            "rag": {k: d[k] for k in ("level", "abstained", "verdicts", "timings", "collection", "model")}}


def completion(answer: Answer, collection: str, cid: str, created: int) -> dict:
    text = answer.text + sources_text(answer)
    return {"id": cid, "object": "chat.completion", "created": created, "model": collection,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 0, "completion_tokens": len(answer.text.split()),
                      "total_tokens": len(answer.text.split())},
            **extras(answer, collection)}


def chunk(cid: str, created: int, collection: str, delta: dict, finish: str | None = None, **extra) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": collection,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def stream_completion(st, question: str, collection: str, cid: str, created: int):
    yield chunk(cid, created, collection, {"role": "assistant", "content": ""})
    streamed: list[str] = []
    try:
        for item in st.svc.ask_stream(question, collection):
            if isinstance(item, str):
                streamed.append(item)
                yield chunk(cid, created, collection, {"content": item})
                continue
            st.metrics.observe_answer(collection, item)
            tail = sources_text(item)
            if "".join(streamed).strip() != item.text.strip():
                # The checked answer differs from the raw tokens: say so rather than leave the draft standing.
                tail = ("\n\n" if streamed else "") + item.text + tail
            if tail:
                yield chunk(cid, created, collection, {"content": tail})
            yield chunk(cid, created, collection, {}, "stop", **extras(item, collection))
    except RagError as e:
        err = {"error": {"message": str(e), "type": type(e).__name__, "code": e.http_status}}
        yield f"data: {json.dumps(err, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


@router.post("/v1/chat/completions", responses=SSE)
async def chat_completions(body: ChatRequest, request: Request, who: Principal = Depends(principal)):
    st = state(request)
    q = await run_in_threadpool(prepare_ask, st, who, last_question(body.messages), body.model)
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    ticket = st.answers.enter()  # 503 with Retry-After at capacity (rag.api.admission)
    if body.stream:
        return StreamingResponse(ticket.guard(stream_completion(st, q, body.model, cid, created)),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    answer = await admission.run(request, ticket, st.svc.ask_stream(q, body.model))
    if answer is None:
        return Response(status_code=admission.CLIENT_GONE)
    st.metrics.observe_answer(body.model, answer)
    return completion(answer, body.model, cid, created)


@router.get("/v1/models")
def list_models(request: Request, who: Principal = Depends(principal)):
    rows = state(request).svc.store.collections()
    created = int(time.time())
    return {"object": "list", "data": [{"id": c.name, "object": "model", "created": created, "owned_by": "rag"}
                                       for c in rows if who.can(c.name)]}
