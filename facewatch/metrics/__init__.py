"""Prometheus metrics of one `serve` process: its own registry (no global state), the API's counters,
and collectors that read cameras, broker, store and re-embedding at each scrape. See http.py for how
GET /metrics is protected."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge

from .. import __version__
from .api import ApiMetrics
from .broker import BrokerCollector
from .cameras import CameraCollector
from .http import metrics_handler, metrics_token
from .mqtt import MqttCollector
from .store import ReembedCollector, StoreCollector

__all__ = ("Metrics", "ApiMetrics", "BrokerCollector", "CameraCollector", "MqttCollector", "ReembedCollector",
           "StoreCollector", "metrics_handler", "metrics_token")


@dataclass(slots=True)
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    api: ApiMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.api = ApiMetrics(self.registry)
        info = Gauge("facewatch_build_info", "facewatch version", ("version",), registry=self.registry)
        info.labels(__version__).set(1)
