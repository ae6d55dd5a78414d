"""Prometheus metrics for the REST API: requests, latency per pipeline stage, abstentions.

Each app gets its own CollectorRegistry (no process-wide default registry), so several
apps in one process, as in the tests, never collide. Route labels use the route template
(/v1/collections/{collection}/documents), not the raw path, to keep cardinality bounded."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from rag.types import Answer

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("rag_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("rag_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=_BUCKETS, registry=self.registry)
        self.stage = Histogram("rag_stage_seconds", "Latency per pipeline stage (retrieve, generate, ...)",
                               ["stage"], buckets=_BUCKETS, registry=self.registry)
        self.answers = Counter("rag_answers", "Answers returned, by level (answered, caveat, abstained)",
                               ["collection", "level"],
                               registry=self.registry)
        self.abstentions = Counter("rag_abstentions", "Answers replaced by an abstention", ["collection"],
                                   registry=self.registry)

    def observe_answer(self, collection: str, answer: Answer) -> None:
        for key, seconds in answer.timings.items():
            self.stage.labels(key.removesuffix("_s")).observe(seconds)
        self.answers.labels(collection, answer.level).inc()
        if answer.abstained:
            self.abstentions.labels(collection).inc()

    def middleware(self):
        async def record(request, call_next):
            t0 = time.perf_counter()
            status = 500
            try:
                response = await call_next(request)
                status = response.status_code
                return response
            finally:
                route = request.scope.get("route")
                name = getattr(route, "path", "unmatched")
                self.requests.labels(request.method, name, str(status)).inc()
                self.latency.labels(name).observe(time.perf_counter() - t0)

        return record

    def render(self) -> bytes:
        return generate_latest(self.registry)
