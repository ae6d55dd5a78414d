"""Admission control (rag.api.admission): a bounded number of answers at once, a bounded
queue, 503 with Retry-After beyond it, and work stopped for clients that left."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest
from api_helpers import ADMIN, bearer, make_app
from conftest import SAMPLE

from ingest.build import ingest_paths

from rag.api.admission import CLIENT_GONE, Admission, run
from rag.errors import OverloadedError


def test_slots_then_queue_then_refusal_with_retry_after():
    a = Admission(slots=1, queue=1, wait_s=0.2)
    first = a.enter()
    first.wait()
    second = a.enter()  # queued: admitted, no slot yet
    with pytest.raises(OverloadedError) as full:
        a.enter()
    assert full.value.http_status == 503 and full.value.retry_after >= 1 and a.rejected == 1
    with pytest.raises(OverloadedError, match="no answers slot came free"):
        second.wait()  # the first still holds the only slot
    first.release()
    first.release()  # idempotent
    with a.enter():  # the slot and the queue are free again
        pass
    assert a._admitted == 0


def test_a_dropped_ticket_gives_its_place_back():
    """A stream whose client left before it started is dropped unstarted: no finally runs in
    its generator, so the ticket must release itself."""
    a = Admission(slots=1, queue=0, wait_s=0.1)
    stream = a.enter().guard(iter(["never read"]))
    assert a._admitted == 1
    del stream
    gc.collect()
    assert a._admitted == 0 and a.enter() is not None


def test_a_stream_dropped_midway_stops_the_pipeline_and_frees_the_slot():
    a = Admission(slots=1, queue=0, wait_s=0.1)
    closed = []

    def pipeline():
        try:
            for i in range(1000):
                yield f"token {i}"
        finally:
            closed.append(True)

    stream = a.enter().guard(pipeline())
    assert next(stream) == "token 0"
    del stream  # the server drops the response of a client that disconnected
    gc.collect()
    assert closed == [True] and a._admitted == 0


class _Leaving:
    """A request whose client disconnects after `after` checks."""

    def __init__(self, after: int):
        self.checks, self.after = 0, after

    async def is_disconnected(self) -> bool:
        self.checks += 1
        return self.checks > self.after


def test_a_plain_answer_stops_when_its_client_leaves():
    a = Admission(slots=1, queue=0, wait_s=0.1)
    produced, closed = [], []

    def pipeline():
        try:
            for i in range(100):
                produced.append(i)
                yield f"token {i}"
            yield "the answer"
        finally:
            closed.append(True)

    assert asyncio.run(run(_Leaving(after=3), a.enter(), pipeline())) is None
    assert len(produced) == 3 and closed == [True] and a.cancelled == 1 and a._admitted == 0
    assert asyncio.run(run(_Leaving(after=10**6), a.enter(), pipeline())) == "the answer"


def test_api_refuses_beyond_capacity_at_once_with_retry_after(tmp_path):
    """One answer running, none waiting: a second question gets 503 and Retry-After right
    away, not a place in a queue it would time out in; the first still gets its answer."""
    client = make_app(tmp_path, answer_slots=1, answer_queue=0, rate_limit_per_minute=1000)
    try:
        svc = client.app.state.rag.svc
        started, go = threading.Event(), threading.Event()
        real = svc.ask_stream

        def slow(question, collection):
            started.set()
            go.wait(10)
            yield from real(question, collection)

        ingest_paths(svc.settings, svc.store, svc.embedder(), [SAMPLE], "default", progress=False)
        svc.ask_stream = slow
        results = {}
        first = threading.Thread(target=lambda: results.update(
            first=client.post("/v1/ask", json={"question": "How tall is the Harbor Point Lighthouse?"}, headers=bearer(ADMIN))))
        first.start()
        assert started.wait(10)
        second = client.post("/v1/ask", json={"question": "How tall is the Harbor Point Lighthouse?"}, headers=bearer(ADMIN))
        assert second.status_code == 503 and int(second.headers["Retry-After"]) >= 1
        assert "busy" in second.json()["detail"]
        chat = client.post("/v1/chat/completions", headers=bearer(ADMIN),
                           json={"model": "default", "messages": [{"role": "user", "content": "How tall?"}]})
        assert chat.status_code == 503
        go.set()
        first.join(10)
        assert results["first"].status_code == 200
        again = client.post("/v1/ask", json={"question": "How tall is the Harbor Point Lighthouse?"}, headers=bearer(ADMIN))
        assert again.status_code == 200 and CLIENT_GONE == 499
    finally:
        client.__exit__(None, None, None)
