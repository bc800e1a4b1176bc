"""Broker metrics: the embedded broker's state (read on its event loop) and the bus client's reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broker.core import BrokerCore

__all__ = ("BrokerCollector", "BrokerSnapshot")


@dataclass(slots=True, frozen=True)
class BrokerSnapshot:
    stats: dict[str, int]
    queue_depths: dict[str, int]


async def _snapshot(core: BrokerCore) -> BrokerSnapshot:
    return BrokerSnapshot(core.stats(), core.queue_depths())


class BrokerCollector(Collector):
    """Collected off the event loop (the scrape runs in a thread); the broker's state is read on the loop
    that owns it, through ``run_coroutine_threadsafe``."""

    def __init__(self, core: Callable[[], BrokerCore | None], loop: asyncio.AbstractEventLoop,
                 bus_reconnects: Callable[[], int], timeout_s: float = 5.0) -> None:
        self.core = core
        self.loop = loop
        self.bus_reconnects = bus_reconnects
        self.timeout_s = timeout_s

    def collect(self) -> Iterator[Metric]:
        reconnects = CounterMetricFamily("facewatch_bus_reconnects", "reconnections of the server's bus client")
        reconnects.add_metric([], float(self.bus_reconnects()))
        yield reconnects
        core = self.core()
        if core is None:  # an external broker (RabbitMQ has its own metrics)
            return
        snap = asyncio.run_coroutine_threadsafe(_snapshot(core), self.loop).result(self.timeout_s)
        gauges = (("connections", "facewatch_broker_connections", "open STOMP connections"),
                  ("bindings", "facewatch_broker_subscriptions", "topic subscriptions"),
                  ("queues", "facewatch_broker_queues", "named queues"),
                  ("held_bytes", "facewatch_broker_held_bytes", "bytes of messages held (queued or unacknowledged)"),
                  ("paused_publishers", "facewatch_broker_paused_publishers", "publishers paused by the memory alarm"))
        for key, name, text in gauges:
            yield GaugeMetricFamily(name, text, value=float(snap.stats.get(key, 0)))
        yield CounterMetricFamily("facewatch_broker_published", "messages published",
                                  value=float(snap.stats.get("published", 0)))
        yield CounterMetricFamily("facewatch_broker_dropped_messages", "messages dropped for slow consumers or "
                                  "full queues", value=float(snap.stats.get("dropped", 0)))
        depth = GaugeMetricFamily("facewatch_broker_queue_messages", "messages waiting in a named queue",
                                  labels=["queue"])
        for queue, count in sorted(snap.queue_depths.items()):
            depth.add_metric([queue], float(count))
        yield depth
