"""The one-line config summary `serve` logs at start: what runs where, no secrets."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from .config import FacewatchConfig
from .config_file import ConfigLocation

__all__ = ("config_summary", "without_password")


def without_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def config_summary(cfg: FacewatchConfig, location: ConfigLocation) -> str:
    broker = (f"embedded on {cfg.broker.host}:{cfg.broker.port}" if cfg.broker.url == "embedded"
              else without_password(cfg.broker.url))
    watcher = (f"on (node {cfg.watcher.node or 'host name'}, file_roots {list(cfg.watcher.file_roots)}, "
               f"{len(cfg.watcher.cameras)} declared camera(s))" if cfg.watcher.enabled else "off")
    metrics = f"{cfg.metrics.path} (bearer token)" if cfg.metrics.enabled else "off"
    m = cfg.mqtt
    mqtt = (f"{'mqtts' if m.tls.enabled else 'mqtt'}://{m.host}:{m.port} under {m.topic_prefix}/ "
            f"({', '.join(m.cameras) if m.cameras else 'every camera'})" if m.enabled else "off")
    return (f"config {location.describe()}; data_dir {cfg.data_dir}; storage {without_password(cfg.storage_url())}; "
            f"api http://{cfg.api.host}:{cfg.api.port}; broker {broker}; device {cfg.runtime.device}; "
            f"watcher {watcher}; grouping {'on' if cfg.grouping.enabled else 'off'}; metrics {metrics}; mqtt {mqtt}; "
            f"log {cfg.log_level} {cfg.log_format}")
