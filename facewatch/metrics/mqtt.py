"""The MQTT bridge's counters at each scrape."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..mqtt import BridgeStats

__all__ = ("MqttCollector",)


class MqttCollector(Collector):
    def __init__(self, stats: BridgeStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield GaugeMetricFamily("facewatch_mqtt_connected", "1 while the MQTT bridge is connected to its broker",
                                value=1.0 if s.connected else 0.0)
        yield GaugeMetricFamily("facewatch_mqtt_queued", "events waiting for the MQTT broker", value=float(s.queued))
        yield CounterMetricFamily("facewatch_mqtt_published", "events published to MQTT", value=float(s.published))
        yield CounterMetricFamily("facewatch_mqtt_dropped", "events dropped: the bridge's queue was full",
                                  value=float(s.dropped))
        yield CounterMetricFamily("facewatch_mqtt_connection_failures", "failed or lost MQTT connections",
                                  value=float(s.failures))
