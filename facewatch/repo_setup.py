"""Assembles the repo and the API (routes, auth, rate limits) from config."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from api import openapi
from api.contract import Contract, Reply
from api.dispatch import Api, Observer, RateLimiter
from api.idempotency import Idempotency, IdempotencyOptions
from api.request import ApiRequest, ApiResponse
from api.routing import REST_ONLY, RouteDef, Router
from api.schemas import obj, string
from repo.analysis import analysis_pool
from repo.calibration import Calibration, load_calibration, shipped_calibration
from repo.decision import Policy
from repo.auth import RepoAuth
from repo.events import EventPublisher
from repo import handlers as repo_handlers
from repo import key_handlers
from repo.images import ImageStore
from repo.jobs import JobRunner, enrol_kind
from repo.reembed import Reembedder, repo_faces
from repo.service import FaceRepository, RepoOptions
from repo.store import RepoStore, open_store
from vision.analyzer import FaceAnalyzer

from . import __version__
from .analyzer_setup import build_analyzer
from .config import FacewatchConfig, RecognitionConfig

__all__ = ("RepoParts", "build_repo", "openapi_document", "instance_id", "node_name")


def node_name(cfg: FacewatchConfig) -> str:
    """This serve process's node: the watcher node it is (default the host name)."""
    return cfg.watcher.node or socket.gethostname()


def instance_id(data_dir: Path) -> str:
    """This data directory's id, made by the first process to ask: the jobs spooled here are
    resumed only by processes using this directory."""
    path = data_dir / "instance-id"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        for _ in range(100):  # another process created it a moment ago and is writing it
            if value := path.read_text().strip():
                return value
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty; delete it and start again") from None
    value = uuid.uuid4().hex
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return value


@dataclass(slots=True)
class RepoParts:
    store: RepoStore
    repo: FaceRepository
    auth: RepoAuth
    router: Router
    api: Api
    jobs: JobRunner
    reembedder: Reembedder


def openapi_document(router: Router) -> dict[str, Any]:
    """This server's OpenAPI document (api.openapi), made from the routes' contracts."""
    return openapi.openapi_document(router, title="facewatch", version=__version__)


@dataclass(slots=True, frozen=True)
class _Instance:
    """What the instance's own routes (health, this API's description) show."""

    model_id: str
    reembedder: Reembedder
    router: Router


async def _health(request: ApiRequest, ctx: _Instance) -> ApiResponse:
    return ApiResponse(200, {"status": "ok", "version": __version__, "embedding_model": ctx.model_id,
                             "reembedding": ctx.reembedder.status.as_json()})


async def _openapi(request: ApiRequest, ctx: _Instance) -> ApiResponse:
    return ApiResponse(200, openapi_document(ctx.router))


_INSTANCE_ROUTES: tuple[RouteDef[_Instance], ...] = (
    RouteDef("GET", "/api/v1/health", _health, "liveness", public=True, contract=Contract((Reply(200, obj(
        {"status": string(enum=("ok",)), "version": string(), "embedding_model": string(), "reembedding": obj({})},
        ["status", "version", "embedding_model", "reembedding"])),))),
    RouteDef("GET", "/api/v1/openapi.json", _openapi, "this document", public=True, transports=REST_ONLY,
             contract=Contract((Reply(200, obj({"openapi": string(), "paths": obj({})}, ["openapi", "paths"])),))),
)


def default_policy(recognition: RecognitionConfig, min_quality: float) -> Policy:
    """``min_quality``: the matching gate (config quality.min_score)."""
    if isinstance(recognition.threshold, str):
        return Policy(rate=recognition.rates[recognition.threshold], margin=recognition.margin,
                      min_quality=min_quality)
    return Policy(rate=None, threshold=recognition.threshold, margin=recognition.margin, min_quality=min_quality)


def recognition_calibration(recognition: RecognitionConfig, model_id: str) -> Calibration | None:
    """The configured calibration file, else the shipped one for ``model_id``.

    A rate (preset) needs one: without it the configured default fails at start, not at the first request.
    """
    if recognition.calibration:
        configured = load_calibration(Path(recognition.calibration))
        if configured.model_id != model_id:
            raise ValueError(f"recognition.calibration is for model {configured.model_id!r}, not {model_id!r}")
        return configured
    calibration = shipped_calibration(model_id)
    if calibration is None and isinstance(recognition.threshold, str):
        raise ValueError(f"no calibration ships for embedding model {model_id!r}: run bench/calibrate.py and set "
                         "recognition.calibration, or set a numeric recognition.threshold")
    return calibration


def build_repo(cfg: FacewatchConfig, analyzer: FaceAnalyzer, events: EventPublisher,
               observer: Observer | None = None) -> RepoParts:
    """``observer``: told of every API request answered (metrics)."""
    store = open_store(cfg.storage_url())
    auth = RepoAuth(store, cfg.auth.access_token_ttl_s, cfg.auth.refresh_token_ttl_s)
    options = RepoOptions(
        policy=default_policy(cfg.recognition, cfg.quality.min_score),
        rates={str(k): v for k, v in cfg.recognition.rates.items()},
        calibration=recognition_calibration(cfg.recognition, analyzer.embedder.model_id),
        min_face_px=cfg.repo.min_face_px,
        min_quality=cfg.repo.min_quality, max_body_bytes=cfg.api.max_body_bytes,
        max_image_pixels=cfg.api.max_image_pixels, save_images=cfg.storage.save_images,
        search=cfg.repo.search.options(),
    )
    pool = analysis_pool(partial(build_analyzer, cfg), cfg.runtime.analysis_processes) \
        if cfg.runtime.analysis_processes else None
    repo = FaceRepository(store, analyzer, ImageStore(Path(cfg.data_dir) / "images"), options, events, pool)
    jobs = JobRunner(store, events, Path(cfg.data_dir) / "jobs", concurrency=max(2, cfg.runtime.analysis_processes),
                     runner_id=instance_id(Path(cfg.data_dir)), lease_ttl_s=cfg.jobs.lease_ttl_s,
                     stop_timeout_s=cfg.api.drain_timeout_s, max_item_bytes=cfg.api.max_body_bytes)
    jobs.register(enrol_kind(repo))
    reembedder = Reembedder(analyzer, repo_faces(repo))
    router = Router()
    repo_context = repo_handlers.RepoContext(repo, auth, jobs)
    router.add_table(repo_handlers.ROUTES, repo_context)
    router.add_table(key_handlers.ROUTES, repo_context)
    router.add_table(_INSTANCE_ROUTES, _Instance(analyzer.embedder.model_id, reembedder, router))
    a = cfg.api
    idempotency = Idempotency(store, f"{node_name(cfg)}:{os.getpid()}",
                              IdempotencyOptions(ttl_s=a.idempotency_ttl_s, wait_s=a.idempotency_wait_s))
    api = Api(router, auth, RateLimiter(cfg.auth.rate_per_s, cfg.auth.rate_burst), idempotency, observer)
    return RepoParts(store, repo, auth, router, api, jobs, reembedder)
