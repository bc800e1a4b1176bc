"""Camera metrics, from this node's supervisor (the workers' last stats reports) and the registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from watcher.service import WatcherService

__all__ = ("CameraCollector", "CAMERA_STATES")

CAMERA_STATES = ("starting", "running", "reconnecting", "restarting", "failed", "stopped")
_COUNTERS = (  # stats key -> metric name, help
    ("decoded", "facewatch_camera_frames_decoded", "frames decoded"),
    ("analysed", "facewatch_camera_frames_analysed", "frames analysed"),
    ("dropped", "facewatch_camera_frames_dropped", "decoded frames dropped (analysis busy)"),
    ("faces", "facewatch_camera_faces", "faces detected"),
    ("embedded", "facewatch_camera_faces_embedded", "faces embedded"),
    ("publish_failures", "facewatch_camera_publish_failures", "events not published (broker unreachable)"),
)


def _histogram(camera: str, data: Any, family: HistogramMetricFamily) -> None:
    if not isinstance(data, dict) or not data.get("bounds_ms"):
        return
    cumulative, buckets = 0, []
    for bound, count in zip([*data["bounds_ms"], float("inf")], data["counts"]):
        cumulative += int(count)
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound) / 1000), cumulative))
    family.add_metric([camera], buckets, float(data["sum_ms"]) / 1000)


class CameraCollector(Collector):
    """Every camera of this node: its state (one sample per state, 1 for the current one), its counters
    (since its worker started: a restart resets them, as Prometheus counters may) and analysis latency."""

    def __init__(self, watcher: WatcherService) -> None:
        self.watcher = watcher

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("facewatch_camera_state", "camera state (1 = current)", labels=["camera", "state"])
        enabled = GaugeMetricFamily("facewatch_camera_enabled", "camera should run", labels=["camera"])
        restarts = CounterMetricFamily("facewatch_camera_worker_restarts", "worker restarts", labels=["camera"])
        rss = GaugeMetricFamily("facewatch_camera_worker_rss_bytes", "worker resident memory", labels=["camera"])
        counters = {key: CounterMetricFamily(name, text, labels=["camera"]) for key, name, text in _COUNTERS}
        events = CounterMetricFamily("facewatch_camera_events", "events published", labels=["camera", "type"])
        latency = HistogramMetricFamily("facewatch_camera_analysis_seconds", "analysis time per analysed frame",
                                        labels=["camera"])
        running, node = set(self.watcher.supervisor.running()), self.watcher.node
        for camera in self.watcher.registry.all():
            # The cameras it runs, and its stopped ones; another node reports what that node runs.
            if camera.id not in running and (camera.enabled or (camera.node or node) != node):
                continue
            status = self.watcher.supervisor.status(camera.id)
            current = status.get("state", "stopped")
            for name in CAMERA_STATES if current in CAMERA_STATES else (*CAMERA_STATES, current):
                state.add_metric([camera.id, name], 1.0 if name == current else 0.0)
            enabled.add_metric([camera.id], 1.0 if camera.enabled else 0.0)
            worker = status.get("worker") or {}
            restarts.add_metric([camera.id], float(worker.get("restarts", 0)))
            stats = status.get("stats") or {}
            if "rss_mib" in stats:
                rss.add_metric([camera.id], float(stats["rss_mib"]) * 2**20)
            for key, family in counters.items():
                if isinstance(stats.get(key), (int, float)):
                    family.add_metric([camera.id], float(stats[key]))
            for kind, count in (stats.get("events") or {}).items():
                events.add_metric([camera.id, str(kind)], float(count))
            _histogram(camera.id, stats.get("analysis_ms_histogram"), latency)
        yield from (state, enabled, restarts, rss, *counters.values(), events, latency)
