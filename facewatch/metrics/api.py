"""API metrics: requests by transport, route and status, and their latency (both transports)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from api.dispatch import Served

__all__ = ("ApiMetrics",)

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """``observe`` is the Api's observer (api.dispatch.Observer)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("facewatch_api_requests", "API requests answered",
                                ("transport", "method", "route", "status"), registry=registry)
        self.latency = Histogram("facewatch_api_request_seconds", "API request time, from admission to answer",
                                 ("transport", "route"), buckets=_LATENCY_BUCKETS_S, registry=registry)

    def observe(self, served: Served) -> None:
        self.requests.labels(served.transport, served.method, served.route, str(served.status)).inc()
        self.latency.labels(served.transport, served.route).observe(served.seconds)
