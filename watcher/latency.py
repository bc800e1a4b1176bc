"""A cumulative histogram of analysis times, small enough to ride in a worker's stats report
(what /metrics turns into a Prometheus histogram)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

__all__ = ("LatencyHistogram", "LATENCY_BUCKETS_MS")

# Upper bounds (ms); one more count for what lies above the last.
LATENCY_BUCKETS_MS: tuple[float, ...] = (5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500)


@dataclass(slots=True)
class LatencyHistogram:
    bounds_ms: tuple[float, ...] = LATENCY_BUCKETS_MS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    sum_ms: float = 0.0
    count: int = 0

    def observe(self, ms: float) -> None:
        self.counts[bisect.bisect_left(self.bounds_ms, ms)] += 1
        self.sum_ms += ms
        self.count += 1

    def as_json(self) -> dict[str, Any]:
        """Per-bucket (not cumulative) counts, the last one above every bound."""
        return {"bounds_ms": list(self.bounds_ms), "counts": list(self.counts), "sum_ms": round(self.sum_ms, 3),
                "count": self.count}
