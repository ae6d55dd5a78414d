"""Admission control: how much model work the API runs at once, and what it says when full.

Answers are CPU-bound; on a laptop two at once only make both slower. So the API runs at most
`RAG_ANSWER_SLOTS` answers at a time and lets `RAG_ANSWER_QUEUE` more wait (each at most
`RAG_ANSWER_WAIT_S`); a request beyond that gets 503 with `Retry-After` at once, instead of
joining a queue it would time out in while the service keeps computing for it. The Retry-After
estimate is the queue ahead of the caller times the recent seconds per answer.

A client that leaves stops its work: a stream's generator is closed when the response is
dropped (the decoder stops at its next token), and a plain answer runs item by item in the thread
pool, checking between items whether the client is still there (`run`)."""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Iterator

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from rag.errors import OverloadedError

CLIENT_GONE = 499  # the status logged for a request whose client left (nginx's; nobody reads it)


class Admission:
    def __init__(self, slots: int, queue: int, wait_s: float, name: str = "answers"):
        self.slots, self.queue, self.wait_s, self.name = slots, queue, wait_s, name
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._admitted = 0  # running + waiting
        self._seconds = 3.0  # moving average of seconds a slot is held; a first guess until measured
        self.rejected = 0
        self.cancelled = 0

    def retry_after(self) -> int:
        ahead = max(0, self._admitted - self.slots + 1)
        return max(1, min(120, math.ceil(self._seconds * ahead / self.slots)))

    def enter(self) -> "Ticket":
        """A place in the queue, or OverloadedError (503, Retry-After) when it is full."""
        with self._lock:
            if self._admitted >= self.slots + self.queue:
                self.rejected += 1
                raise OverloadedError(f"the service is busy ({self.slots} {self.name} running, {self.queue} "
                                      "waiting); retry later", retry_after=self.retry_after())
            self._admitted += 1
        return Ticket(self)

    def _leave(self, held_s: float | None) -> None:
        with self._lock:
            self._admitted -= 1
            if held_s is not None:
                self._seconds = 0.8 * self._seconds + 0.2 * held_s


class Ticket:
    """One admitted request: wait() for a slot, release() when done (idempotent). A ticket
    dropped unreleased (a stream whose client left before it started) releases itself."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self._state = {"held": False, "since": 0.0, "done": False}
        self._finalizer = weakref.finalize(self, Ticket._release, admission, self._state)

    def wait(self) -> None:
        a = self._admission
        if not a._free.acquire(timeout=a.wait_s):
            self.release()
            raise OverloadedError(f"no {a.name} slot came free within {a.wait_s:.0f}s; retry later",
                                  retry_after=a.retry_after())
        self._state.update(held=True, since=time.monotonic())

    def release(self) -> None:
        self._finalizer()

    def __enter__(self) -> "Ticket":
        self.wait()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @staticmethod
    def _release(admission: Admission, state: dict) -> None:
        if state["done"]:
            return
        state["done"] = True
        if state["held"]:
            admission._free.release()
        admission._leave(time.monotonic() - state["since"] if state["held"] else None)

    def guard(self, items: Iterator) -> Iterator:
        """A response stream that waits for a slot, holds it while it runs, and gives it back
        when it ends or is dropped (closing `items`: the pipeline stops generating)."""
        try:
            with self:
                yield from items
        finally:
            _close(items)


async def run(request: Request, ticket: Ticket, items: Iterator):
    """The last item of `items` (the pipeline's Answer), computed in the thread pool item by
    item while holding a slot; None when the client disconnected (the rest is not computed)."""
    try:
        await run_in_threadpool(ticket.wait)
        last = None
        for_done = object()
        while True:
            if await request.is_disconnected():
                ticket._admission.cancelled += 1
                return None
            item = await run_in_threadpool(next, items, for_done)
            if item is for_done:
                return last
            last = item
    finally:
        await run_in_threadpool(_close, items)
        ticket.release()


def _close(items: Iterator) -> None:
    """Stop a generator where it stands (its finally blocks run: the decoder lets go)."""
    close = getattr(items, "close", None)
    if close:
        close()
