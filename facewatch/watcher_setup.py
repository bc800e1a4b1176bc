"""Assembles the watcher (registry, supervisor, routes) from config.

Workers are separate processes: they get factories (module-level functions
bound to the config), build their own models and store, and connect to the
broker with the internal credentials.
"""

from __future__ import annotations

import logging
from pathlib import Path
import os
import socket
from collections.abc import Callable
from functools import partial

from api.errors import ApiError
from api.routing import Router
from broker.client import BrokerAddress
from repo.service import FaceRepository
from repo.store import RepoStore, open_store
from watcher.camera_options import pipeline_options
from watcher.cameras import Camera, CameraSettings, SourcePolicy
from watcher.handlers import ROUTES as WATCHER_ROUTES
from watcher.leases import CameraLeases
from watcher.networks import parse_networks
from watcher.nodes import NodeRegistry
from watcher.registry import CameraRegistry
from watcher.service import WatcherOptions, WatcherService, disable_finished
from watcher.supervisor import EventPublish, Supervisor, SupervisorOptions
from watcher.worker import WorkerSpec

from .analyzer_setup import build_analyzer
from .config import ConfigError, FacewatchConfig
from .logs import configure_logging

__all__ = ("build_watcher", "declare_cameras", "source_policy")

log = logging.getLogger(__name__)


def source_policy(cfg: FacewatchConfig) -> SourcePolicy:
    w = cfg.watcher
    return SourcePolicy(tuple(w.file_roots), w.allow_devices, w.open_timeout_s, w.read_timeout_s,
                        w.max_initial_attempts, parse_networks(w.blocked_networks), w.allow_playlists)


def build_watcher(cfg: FacewatchConfig, registry: CameraRegistry, repo: FaceRepository, router: Router,
                  bus_address: Callable[[], BrokerAddress], publish: EventPublish) -> WatcherService:
    """``bus_address`` is asked at each worker start (the embedded broker's port is known only once it runs)."""
    policy = source_policy(cfg)
    w = cfg.watcher
    for root in w.file_roots:
        if not Path(root).is_dir():  # a typo here shows only when a file camera is refused: say it now
            log.warning("watcher.file_roots: %s is not a folder; file cameras under it will not open", root)

    def make_spec(camera: Camera) -> WorkerSpec:
        settings = camera.settings
        pipeline = pipeline_options(
            camera.id, settings, repo.policy(settings.threshold), default_min_quality=cfg.quality.min_score,
            calibration=repo.options.calibration, rematch_interval_s=w.rematch_interval_s,
            tiles_per_frame=w.tiles_per_frame, track_shots=w.track_shots,
        )
        return WorkerSpec(camera, policy.stream_options(settings), pipeline, bus_address(),
                          partial(build_analyzer, cfg), partial(open_store, cfg.storage_url()), os.getpid(),
                          cfg.log_level, search=cfg.repo.search.options(), sync=cfg.sync.options(),
                          feed_grouping=cfg.grouping.enabled, feed_sightings=cfg.sightings.enabled,
                          log_setup=partial(configure_logging, cfg.log_level, cfg.log_format))

    supervisor = Supervisor(make_spec, publish, SupervisorOptions(
        restart_initial_s=w.restart_initial_s, restart_max_s=w.restart_max_s, watchdog_s=w.watchdog_s),
        on_ended=partial(disable_finished, registry))

    def check_threshold(value: object) -> float:
        """A camera's threshold must be a decision the repo can make (a rate needs a calibration):
        refused at registration, not in a crash loop at the camera's first face."""
        return repo.threshold_for(repo.policy(value), 1.0, 1)

    node = w.node or socket.gethostname()
    nodes = NodeRegistry(registry.store)
    nodes.announce(node, socket.gethostname(), os.getpid())  # from now on cameras can be given to this node
    service = WatcherService(registry, supervisor, policy, check_threshold,
                             WatcherOptions(node=node, max_cameras_per_tenant=w.max_cameras_per_tenant,
                                            lease_ttl_s=w.lease_ttl_s), publish, nodes, CameraLeases(registry.store))
    router.add_table(WATCHER_ROUTES, service)
    return service


def declare_cameras(cfg: FacewatchConfig, service: WatcherService, store: RepoStore) -> None:
    """Registers (or updates) the cameras of config.yaml."""
    for declared in cfg.watcher.cameras:
        tenant_id = store.tenant_by_name(declared.tenant)
        if tenant_id is None:
            raise ConfigError(f"watcher.cameras: camera {declared.id!r} names tenant {declared.tenant!r}, "
                              "which does not exist (facewatch tenants create)")
        settings = CameraSettings.model_validate(declared.model_dump(exclude={"id", "tenant", "enabled"}))
        try:
            service.declare(tenant_id, declared.id, settings, declared.enabled)
        except ApiError as exc:
            raise ConfigError(f"watcher.cameras: camera {declared.id!r}: {exc.reason}") from None
