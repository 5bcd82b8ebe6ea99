"""Prometheus metrics, one registry per app (never the process-global one), so that several
apps in one process (tests) do not collide."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Request counts and latencies, queue state, batch sizes and token counts."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "oracle_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "oracle_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("oracle_in_flight_requests", "requests admitted now", registry=r)
        self.rejected = Counter(
            "oracle_rejected_total", "requests refused because the queue was full", registry=r
        )
        self.timeouts = Counter("oracle_timeouts_total", "requests that timed out", registry=r)
        self.batch_size = Histogram(
            "oracle_batch_size",
            "engine calls by kind and batch size",
            ["kind"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.tokens = Counter(
            "oracle_tokens_total", "oracle tokens processed, by kind", ["kind"], registry=r
        )

    def observe_batch(self, kind: str, size: int) -> None:
        self.batch_size.labels(kind).observe(size)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Count and time each request under its route template (bounded label values)."""
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.requests.labels(name, str(status)).inc()
            self.latency.labels(name).observe(time.perf_counter() - start)
