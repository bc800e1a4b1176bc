"""CLI commands that talk to a running `facewatch serve` through ``facewatch.client``:
``cameras add|list|show|edit|start|stop|remove|status`` (STOMP, the cameras' only transport) and
``enrol DIR|ZIP --gallery G`` (REST upload, progress from the job's topic).

They find the service through the same config as ``serve`` (its API port, its broker) and act as one
tenant, named by its API key: ``--api-key`` or ``FACEWATCH_API_KEY``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import urllib.error
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from broker.client import BrokerAddress, BusError

from .client import ApiCallError, Camera, CameraStatus, Facewatch, Job
from .config import FacewatchConfig
from .config_file import ConfigLocation
from .progress import ProgressBar

__all__ = ("add_client_commands", "ClientUsageError", "API_KEY_ENV")

API_KEY_ENV = "FACEWATCH_API_KEY"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# A zip sent in one request stays this far under api.max_body_bytes (multipart framing).
_BODY_MARGIN = 0.9

Loader = Callable[[argparse.Namespace], tuple[FacewatchConfig, ConfigLocation]]


class ClientUsageError(Exception):
    """A client command cannot run as asked (no API key, an empty folder ...); one line for the user."""


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _api_key(args: argparse.Namespace) -> str:
    key = args.api_key or os.environ.get(API_KEY_ENV, "")
    if not key:
        raise ClientUsageError(f"this command acts as a tenant: give its API key with --api-key or {API_KEY_ENV} "
                               "(facewatch tenants create prints one)")
    return str(key)


def _broker_address(cfg: FacewatchConfig, api_key: str) -> BrokerAddress:
    """The service's broker as a tenant reaches it: the embedded one's plain port (else its TLS port),
    logged in with the tenant's key; an external one with the url's credentials."""
    b = cfg.broker
    if b.url != "embedded":
        return BrokerAddress.parse(b.url, ca_file=b.ca_file)
    if b.port is not None:
        return BrokerAddress(_local(b.host), b.port, "facewatch-cli", api_key)
    if b.tls_port is not None:
        return BrokerAddress(b.host, b.tls_port, "facewatch-cli", api_key, tls=True, ca_file=b.ca_file)
    raise ClientUsageError("the embedded broker has no port this command can reach (broker.port and "
                           "broker.tls_port are null)")


def connect(cfg: FacewatchConfig, api_key: str, *, rest: bool = True, bus: bool = True) -> Facewatch:
    """A client of the service ``cfg`` describes: its REST port, and its broker (the embedded one, logged in
    with the tenant's key; an external one with the url's credentials)."""
    logging.getLogger("stomp.py").setLevel(logging.WARNING)  # its connection chatter is not for a person
    scheme = "https" if cfg.api.tls.cert_file else "http"
    api_url = f"{scheme}://{_local(cfg.api.host)}:{cfg.api.port}" if rest else None
    broker = _broker_address(cfg, api_key) if bus else None
    try:
        return Facewatch.connect(api_url=api_url, broker=broker, api_key=api_key, client_name="facewatch-cli",
                                 connect_timeout_s=5.0)
    except BusError as exc:
        where = f"{broker.host}:{broker.port}" if broker is not None else "the broker"
        raise ClientUsageError(f"cannot reach the service's broker at {where} ({exc}); is `facewatch serve` "
                               "running with this config, and is the API key valid?") from None


# -- cameras -------------------------------------------------------------------------------------
def _setting(text: str) -> tuple[str, Any]:
    """KEY=VALUE with a YAML value: max_fps=5, loop=true, attributes=[age,gender], name=Front door."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _status_line(status: CameraStatus | None) -> str:
    if status is None:
        return "-"
    return status.state + (f" ({status.reason})" if status.reason else "")


def _camera_table(cameras: list[Camera]) -> str:
    rows = [("ID", "ENABLED", "STATE", "GALLERIES", "URL")]
    rows += [(c.id, "yes" if c.enabled else "no", _status_line(c.status), ",".join(c.galleries) or "-", c.url)
             for c in cameras]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows)


def _camera_json(camera: Camera) -> dict[str, Any]:
    out: dict[str, Any] = {"id": camera.id, "enabled": camera.enabled, "node": camera.node, "topic": camera.topic,
                           **camera.settings}
    if camera.status is not None:
        out["status"] = _status_json(camera.status)
    return out


def _status_json(status: CameraStatus) -> dict[str, Any]:
    return {"id": status.id, "state": status.state, "reason": status.reason, "enabled": status.enabled,
            "node": status.node, "worker": status.worker, "stats": status.stats}


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def cmd_cameras(args: argparse.Namespace, load: Loader) -> int:
    cfg, location = load(args)
    action = args.cameras_command
    with connect(cfg, _api_key(args), rest=False) as fw:
        try:
            if action == "list":
                cameras = fw.cameras()
                if args.json:
                    _print_json([_camera_json(c) for c in cameras])
                else:
                    print(_camera_table(cameras) if cameras else "no cameras")
            elif action == "add":
                settings = dict(args.set or [])
                camera = fw.add_camera(args.id, args.url, galleries=args.gallery or [], enabled=not args.disabled,
                                       **settings)
                print(f"camera {camera.id} registered ({'started' if camera.enabled else 'not started'}); "
                      f"events on {camera.topic}")
            elif action == "show":
                _print_json(_camera_json(fw.camera(args.id)))
            elif action == "edit":
                if not args.set:
                    raise ClientUsageError("nothing to change: give --set KEY=VALUE (e.g. --set max_fps=2)")
                _print_json(_camera_json(fw.edit_camera(args.id, **dict(args.set))))
            elif action == "start":
                print(f"camera {fw.start_camera(args.id).id} started")
            elif action == "stop":
                print(f"camera {fw.stop_camera(args.id).id} stopped")
            elif action == "remove":
                fw.remove_camera(args.id)
                print(f"camera {args.id} removed")
            else:
                _print_json(_status_json(fw.camera_status(args.id)))
        except ApiCallError as exc:
            if exc.param == "url" and "watcher.file_roots" in exc.reason:
                raise ApiCallError(exc.status, exc.code, f"{exc.reason} (this machine's config: "
                                   f"{location.describe()})", exc.param) from None
            raise
    return 0


# -- enrol ------------------------------------------------------------------------------------------
def _images_of_folder(root: Path) -> Iterator[tuple[str, bytes]]:
    """(``<subject>/<image>``, bytes) of every image one folder down: the folder names the subject."""
    for subject in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for image in sorted(subject.iterdir()):
            if image.is_file() and image.suffix.lower() in _IMAGE_SUFFIXES:
                yield f"{subject.name}/{image.name}", image.read_bytes()


def _images_of_zip(path: Path) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if not info.is_dir() and info.filename.lower().endswith(_IMAGE_SUFFIXES):
                yield info.filename, archive.read(info)


def enrol_batches(items: Iterator[tuple[str, bytes]], max_bytes: int) -> Iterator[tuple[bytes, int]]:
    """Zips of the items, each under ``max_bytes`` (one request each), with their image counts."""
    buffer, count, size = io.BytesIO(), 0, 0
    archive = zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED)  # images are compressed already
    for name, data in items:
        entry = len(data) + 2 * len(name) + 100  # local header + central directory
        if entry > max_bytes:
            raise ClientUsageError(f"{name} is {len(data)} bytes, over the server's request limit (api.max_body_bytes)")
        if count and size + entry > max_bytes:
            archive.close()
            yield buffer.getvalue(), count
            buffer, count, size = io.BytesIO(), 0, 0
            archive = zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED)
        archive.writestr(name, data)
        count += 1
        size += entry
    archive.close()
    if count:
        yield buffer.getvalue(), count


def cmd_enrol(args: argparse.Namespace, load: Loader) -> int:
    cfg, _ = load(args)
    source = Path(args.source)
    if source.is_dir():
        items = _images_of_folder(source)
        total = sum(1 for _ in _images_of_folder(source))
    elif source.is_file() and zipfile.is_zipfile(source):
        items = _images_of_zip(source)
        total = sum(1 for _ in _images_of_zip(source))
    else:
        raise ClientUsageError(f"{source} is neither a folder of <subject>/<image> nor a zip file")
    if total == 0:
        raise ClientUsageError(f"{source} holds no images as <subject>/<image>")
    try:
        return _enrol(args, cfg, source, items, total)
    except urllib.error.URLError as exc:
        raise ClientUsageError(f"cannot reach the service's API at http://{_local(cfg.api.host)}:{cfg.api.port} "
                               f"({exc.reason}); is `facewatch serve` running with this config?") from None


def _enrol(args: argparse.Namespace, cfg: FacewatchConfig, source: Path, items: Iterator[tuple[str, bytes]],
           total: int) -> int:
    added, skipped, failed, finished = 0, 0, [], 0
    bar = ProgressBar(f"enrolling into {args.gallery}", total)
    with connect(cfg, _api_key(args)) as fw:
        if args.create and args.gallery not in {g.name for g in fw.galleries()}:
            fw.create_gallery(args.gallery)
        for data, count in enrol_batches(items, int(cfg.api.max_body_bytes * _BODY_MARGIN)):
            job = fw.enrol_zip(args.gallery, data, source.name if source.suffix == ".zip" else "enrol.zip")
            before = finished

            def show(state: Job, before: int = before) -> None:
                bar.update(before + state.done)

            job = fw.wait_job(job.id, show)
            finished += count
            added += int(job.result.get("added", 0))
            skipped += int(job.result.get("skipped", 0))
            failed += list(job.result.get("failed", []))
            if job.status != "done":
                bar.close(job.status)
                print(f"facewatch: enrolment job {job.id} {job.status}: {job.result.get('error', '')}",
                      file=sys.stderr)
                return 1
    bar.close("done")
    already = f", {skipped} already enrolled (skipped)" if skipped else ""
    print(f"{added} face(s) enrolled into {args.gallery} from {total} image(s){already}; {len(failed)} failed")
    for failure in failed:
        print(f"  {failure.get('item')}: {failure.get('code')} {failure.get('reason')}")
    return 0


# -- the parser -----------------------------------------------------------------------------------------
def add_client_commands(sub: Any, config_arg: Callable[[argparse.ArgumentParser], None], load: Loader) -> None:
    """The ``cameras`` and ``enrol`` subcommands on ``sub`` (the CLI's subparsers)."""

    def client_args(parser: argparse.ArgumentParser) -> None:
        config_arg(parser)
        parser.add_argument("--api-key", metavar="KEY", default=None,
                            help=f"the tenant's API key (default: ${API_KEY_ENV})")

    cameras = sub.add_parser(
        "cameras", help="a tenant's cameras on the running service (over STOMP)",
        description="Register and control cameras on the running service. Cameras are served over STOMP only "
        "(/queue/facewatch.api); these commands are a client of it, acting as the tenant whose API key they get.")
    actions = cameras.add_subparsers(dest="cameras_command", required=True, metavar="ACTION")
    run = lambda a: cmd_cameras(a, load)  # noqa: E731
    listing = actions.add_parser("list", help="cameras with their state", description="List cameras.")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add = actions.add_parser("add", help="register a camera (started unless --disabled)",
                             description="Register a camera. Settings: name, rtsp_transport, loop, max_fps, "
                             "min_face_px, min_quality, threshold, cooldown_s, unknown_after_frames, attach_crop, "
                             "attributes, msgpack (see config.yaml, watcher.cameras).")
    add.add_argument("id", help="camera id: lower case letters, digits, '_' or '-'")
    add.add_argument("url", help="rtsp://..., http(s)://..., file:///abs/path.mp4 (under watcher.file_roots)")
    add.add_argument("--gallery", "-g", action="append", help="a gallery to match against (repeat)")
    add.add_argument("--disabled", action="store_true", help="register without starting it")
    edit = actions.add_parser("edit", help="change settings (restarts its worker)", description="Change a camera.")
    edit.add_argument("id")
    for parser in (add, edit):
        parser.add_argument("--set", "-s", action="append", type=_setting, metavar="KEY=VALUE",
                            help="a setting, value in YAML (repeat): max_fps=2, loop=true, attributes=[age]")
    for name, text in (("show", "a camera's settings and state"), ("start", "start a camera"),
                       ("stop", "stop a camera"), ("remove", "stop and remove a camera"),
                       ("status", "worker state and stats")):
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        action.add_argument("id")
    for action in (listing, add, edit, *(actions.choices[n] for n in ("show", "start", "stop", "remove", "status"))):
        client_args(action)
        action.set_defaults(func=run)

    enrol = sub.add_parser(
        "enrol", help="enrol a folder or zip of <subject>/<image> into a gallery, with progress",
        description="Bulk enrolment through the running service: each <subject>/<image> of the folder (or zip) "
        "is enrolled into that subject (made if new) of the gallery. Progress comes from the job's topic.")
    client_args(enrol)
    enrol.add_argument("source", metavar="DIR|ZIP", help="a folder of <subject>/ folders of images, or a zip of them")
    enrol.add_argument("--gallery", "-g", required=True, help="the gallery to enrol into")
    enrol.add_argument("--create", action="store_true", help="create the gallery if it does not exist")
    enrol.set_defaults(func=lambda a: cmd_enrol(a, load))
