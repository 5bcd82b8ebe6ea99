"""Prometheus metrics, one registry per app (never the process-global one), so that several
apps in one process (tests) do not collide."""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class MetricsMiddleware:
    """Count and time each HTTP request under its route template (bounded label values).

    Plain ASGI: Starlette's ``BaseHTTPMiddleware`` runs each request through a task group and
    a body stream, which cost the event loop more than some engine calls under load.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")  # set by the router on this same scope
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)
