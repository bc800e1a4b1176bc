"""A tenant that attacks: what a second probe of issue 12's kind found, each on a real `facewatch serve`.

Each test names what went wrong before: another tenant's camera events on a kept subscription, a
subscribe-only key that could SEND, one STOMP request that took the STOMP API down for every tenant,
plain-text (or 500) answers to malformed HTTP, camera URLs that crashed their check, and a zip of a few
hundred KB that made the server allocate gigabytes.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from broker.client import BrokerAddress, BusClient, Reply

from tests.event_factory import unknown
from tests.waiting import eventually

from .conftest import RawStomp
from .repo_server import RepoServer

pytestmark = [pytest.mark.models, pytest.mark.data]

API = "/queue/facewatch.api"
MAX_FRAME_BYTES = 1024 * 1024  # the broker's frame limit in this module: small, so that a reply passes it easily


class Service:
    def __init__(self, server: RepoServer, acme: dict[str, str], globex: dict[str, str], data: Path) -> None:
        self.server, self.acme, self.globex, self.data = server, acme, globex, data
        creds = json.loads((server.data_dir / "broker-credentials.json").read_text())
        self.bus = BusClient(BrokerAddress("127.0.0.1", server.stomp_port, creds["login"], creds["passcode"]))
        self.bus.connect()

    def call(self, tenant: dict[str, str], method: str, path: str, body: Any = b"") -> Reply:
        return self.bus.request(API, body, {"method": method, "path": path, "x-api-key": tenant["api_key"]},
                                timeout_s=30)

    def peer(self, key: str) -> RawStomp:
        raw = RawStomp(self.server.stomp_port, timeout_s=20)
        assert raw.connect("app", key).command == "CONNECTED"
        return raw


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, shared_data: Path) -> Iterator[Service]:
    server = RepoServer(tmp_path_factory.mktemp("hostile"), models_dir, None,
                        FACEWATCH_BROKER__MAX_FRAME_BYTES=str(MAX_FRAME_BYTES))
    acme, globex = server.create_tenant("acme"), server.create_tenant("globex")
    server.start()
    running = Service(server, acme, globex, shared_data)
    yield running
    running.bus.close()
    server.stop()


def _status_of(frame_body: bytes, camera: str) -> bool:
    event = json.loads(frame_body)
    return bool(event["type"] == "camera.status" and event["camera"] == camera)


def test_a_camera_id_another_tenant_takes_over_sends_nothing_to_the_old_owners_subscriptions(
        service: Service) -> None:
    made = service.call(service.acme, "POST", "/api/v1/cameras",
                        {"id": "handed-on", "url": "rtsp://198.51.100.7:1/none", "enabled": False})
    assert made.status == 201, made.json()
    wall = service.server.http(api_key=service.acme["api_key"]).call(
        "POST", "/api/v1/keys", {"name": "wall", "scope": {"kind": "subscribe", "cameras": ["handed-on"]}})
    assert wall.status == 201
    kept = []  # acme keeps subscriptions on its camera's topics, with its full key and its wall display's key
    for key, destination in ((service.acme["api_key"], "/topic/watcher.handed-on"),
                             (service.acme["api_key"], "/topic/watcher-msgpack.handed-on"),
                             (wall.body["key"], "/topic/watcher.handed-on")):
        peer = service.peer(key)
        peer.send_frame("SUBSCRIBE", {"destination": destination, "id": "1", "receipt": "r"})
        assert peer.recv().command == "RECEIPT"
        kept.append(peer)
    assert service.call(service.acme, "DELETE", "/api/v1/cameras/handed-on").status == 204
    owner = service.peer(service.globex["api_key"])  # on its own prefix: before the camera is registered
    owner.send_frame("SUBSCRIBE", {"destination": f"/topic/tenant.{service.globex['tenant_id']}.watcher.handed-on",
                                   "id": "1", "receipt": "r"})
    assert owner.recv().command == "RECEIPT"
    taken = service.call(service.globex, "POST", "/api/v1/cameras",
                         {"id": "handed-on", "url": "rtsp://198.51.100.7:1/none", "msgpack": True})
    assert taken.status == 201, taken.json()
    try:
        assert _status_of(owner.recv(timeout_s=30).body, "handed-on")  # its worker runs and says so
        status = service.call(service.globex, "GET", "/api/v1/cameras/handed-on/status").json()
        for peer in kept:
            peer.recv_none(wait_s=1.0)  # globex's events never reach acme
        assert status["id"] == "handed-on"
    finally:
        assert service.call(service.globex, "DELETE", "/api/v1/cameras/handed-on").status == 204


def test_a_subscribe_key_may_send_nowhere_not_even_to_reply_queues(service: Service) -> None:
    made = service.server.http(api_key=service.acme["api_key"]).call(
        "POST", "/api/v1/keys", {"name": "screen", "scope": {"kind": "subscribe", "cameras": ["lobby"]}})
    for destination in ("/temp-queue/loop", "/reply-queue/guessed0token0guessed0", API):
        peer = service.peer(made.body["key"])
        peer.send_frame("SEND", {"destination": destination, "reply-to": "/temp-queue/r", "receipt": "r"}, b"{}")
        error = peer.recv()
        assert (error.command, error.headers.get("message")) == ("ERROR", "access refused"), destination
        assert peer.closed_by_peer()


def test_a_stomp_reply_too_large_for_one_frame_is_a_413_and_the_stomp_api_lives_on(service: Service) -> None:
    # The broker refused the reply's frame and dropped the API's connection; the request, never
    # acknowledged, came back to do it again: no tenant got an answer over STOMP any more.
    http = service.server.http(api_key=service.acme["api_key"])
    assert http.call("POST", "/api/v1/galleries", {"name": "large"}).status == 201
    assert http.call("POST", "/api/v1/galleries/large/subjects", {"id": "obama", "name": "Obama"}).status == 201
    photo = Image.open(service.data / "faces" / "enroll" / "obama" / "obama.jpg").convert("RGB")
    noise = Image.fromarray(np.random.default_rng(7).integers(0, 255, (1000, 1000, 3), dtype=np.uint8))
    noise.paste(photo, (0, 0))
    png = io.BytesIO()
    noise.save(png, "PNG")
    assert MAX_FRAME_BYTES < len(png.getvalue()) < 10 * 1024 * 1024
    added = http.call("POST", "/api/v1/galleries/large/subjects/obama/faces",
                      files={"file": ("big.png", png.getvalue())}, fields={"force": "true"})
    assert added.status == 201, added.body
    face = added.body["faces"][0]["id"]
    assert http.call("GET", f"/api/v1/faces/{face}/image").raw == png.getvalue()  # REST carries it
    over = service.call(service.acme, "GET", f"/api/v1/faces/{face}/image")
    assert over.status == 413 and over.json()["code"] == "PAYLOAD_TOO_LARGE"
    for tenant in (service.acme, service.globex):
        assert service.call(tenant, "GET", "/api/v1/galleries").status == 200


def _raw_http(service: Service, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", service.server.port), timeout=20) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def _request(method: str, head: str, body: bytes = b"") -> bytes:
    return f"{method} /api/v1/galleries HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n".encode() + body


@pytest.mark.parametrize(("request_bytes", "status"), [
    (_request("FOO", ""), 400),  # a method aiohttp's parser refuses
    (_request("GET", "X Y: z\r\n"), 400),  # a header name with a space
    (_request("POST", "Content-Length: abc\r\n"), 400),
    (_request("POST", "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400),
    (_request("POST", "Content-Type: application/json\r\nContent-Encoding: br\r\nContent-Length: 4\r\n", b"abcd"), 400),
    (_request("POST", "Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n", b"abcd"),
     400),  # was a 500 in plain text
    (_request("POST", "Content-Type: application/json\r\nContent-Encoding: deflate\r\nContent-Length: 4\r\n", b"abcd"),
     400),
    (_request("POST", "Content-Type: application/json\r\nExpect: 200-ok\r\nContent-Length: 2\r\n", b"{}"), 417),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
], ids=["method", "header-name", "content-length", "length-and-chunked", "brotli", "bad-gzip", "bad-deflate",
        "expect", "http2-preface"])
def test_requests_aiohttp_refuses_itself_are_answered_in_the_error_shape(service: Service, request_bytes: bytes,
                                                                         status: int) -> None:
    key = f"x-api-key: {service.acme['api_key']}\r\n".encode()
    request_bytes = request_bytes.replace(b"Host: x\r\n", b"Host: x\r\n" + key, 1)
    got, headers, body = _raw_http(service, request_bytes)
    assert got == status, body
    assert headers["content-type"].startswith("application/json"), (headers, body)
    answer = json.loads(body)
    assert isinstance(answer["code"], str) and answer["reason"], answer
    # A well-formed gzip body is read as before.
    if b"gzip" in request_bytes:
        good = gzip.compress(b'{"name": "zipped"}')
        got, _, body = _raw_http(service, _request(
            "POST", f"Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {len(good)}\r\n",
            good).replace(b"Host: x\r\n", b"Host: x\r\n" + key, 1))
        assert got == 201, body


@pytest.mark.parametrize("url", ["http://[::1", "http://[zz]/x", "http://h:99999/x", "rtsp://h:-1/x",
                                 "file:///videos/clip\u0000.mp4", "rtsp://cam\u0000.local/x"],
                         ids=["ipv6-unclosed", "ipv6-bad", "port-range", "port-negative", "nul-path", "nul-host"])
def test_camera_urls_that_do_not_parse_are_bad_params(service: Service, url: str) -> None:
    made = service.call(service.acme, "POST", "/api/v1/cameras", {"url": url, "enabled": False})
    assert made.status == 400 and made.json()["code"] == "BAD_PARAM" and made.json()["param"] == "url", made.json()
    ok = service.call(service.acme, "POST", "/api/v1/cameras",
                      {"id": "parses", "url": "rtsp://198.51.100.7:1/x", "enabled": False})
    assert ok.status == 201
    try:
        changed = service.call(service.acme, "PATCH", "/api/v1/cameras/parses", {"url": url})
        assert changed.status == 400 and changed.json()["param"] == "url", changed.json()
    finally:
        assert service.call(service.acme, "DELETE", "/api/v1/cameras/parses").status == 204


def test_a_camera_may_not_reach_the_servers_own_services_or_the_clouds_metadata(service: Service) -> None:
    # 198.51.100.7 (TEST-NET-1) stands for a camera on a network cameras may reach. Cameras are a STOMP API.
    server = service.server
    urls = [f"rtsp://127.0.0.1:{server.stomp_port}/x", f"http://localhost:{server.port}/api/v1/me",
            "http://[::1]:5432/", "http://[::ffff:127.0.0.1]:6379/", "http://2130706433/", "rtsp://127.1/x",
            "http://0.0.0.0:8080/", "http://169.254.169.254/latest/meta-data/"]
    # Read as 127.0.0.1 by FFmpeg, as another host by Python's urlsplit: refused for its shape.
    differential = [f"rtsp://127.0.0.1:{server.stomp_port}[fd00::1]/x", "http://u:p@169.254.169.254:80[v1.x]/"]
    for url in urls + differential:
        made = service.call(service.acme, "POST", "/api/v1/cameras", {"url": url, "enabled": False})
        body = made.json()
        assert made.status == 400 and body["code"] == "BAD_PARAM" and body["param"] == "url", (url, body)
        assert ("watcher.blocked_networks" if url in urls else "its host may be") in body["reason"], body
    lan = service.call(service.acme, "POST", "/api/v1/cameras",
                       {"id": "lan", "url": "rtsp://198.51.100.7:554/x", "enabled": False})
    assert lan.status == 201, lan.json()
    try:
        moved = service.call(service.acme, "PATCH", "/api/v1/cameras/lan", {"url": "rtsp://127.0.0.1:554/x"})
        assert moved.status == 400 and "127.0.0.0/8" in moved.json()["reason"], moved.json()
        assert service.call(service.acme, "GET", "/api/v1/cameras/lan").json()["url"] == "rtsp://198.51.100.7:554/x"
    finally:
        assert service.call(service.acme, "DELETE", "/api/v1/cameras/lan").status == 204


def test_a_zip_member_larger_than_an_image_may_be_is_refused_before_it_is_decompressed(service: Service) -> None:
    # 50 MB of zeros deflate to 50 KB; the job read each member whole before looking at it, so a zip
    # under the body limit made the server allocate up to max_zip_bytes (2 GiB) per member.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("someone/bomb.jpg", bytes(50 * 1024 * 1024))
    http = service.server.http(api_key=service.acme["api_key"])
    assert http.call("POST", "/api/v1/galleries", {"name": "bombed"}).status == 201
    for path in ("/api/v1/galleries/bombed/enrol", "/api/v1/groups/jobs"):
        sent = http.call("POST", path, files={"file": ("bomb.zip", buffer.getvalue())})
        assert sent.status == 413 and sent.body["code"] == "PAYLOAD_TOO_LARGE", sent.body
        assert "someone/bomb.jpg" in sent.body["reason"]
    items = [{"subject": "someone", "image": base64.b64encode(bytes(100)).decode()}]
    assert http.call("POST", "/api/v1/galleries/bombed/enrol", {"items": items}).status == 202  # small ones run


def _raw_get(service: Service, path: str, header: bytes) -> tuple[int, dict[str, Any]]:
    status, headers, body = _raw_http(service, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
                                      + header + b"\r\n\r\n")
    assert headers["content-type"].startswith("application/json"), body
    answer: dict[str, Any] = json.loads(body)
    return status, answer


@pytest.mark.parametrize("header", ["Authorization: Bearer fwt.a.\u00e9".encode(), b"Authorization: Bearer fwt.a.\xff",
                                    b"x-api-key: fwk_0123456789abcdef_\xe9", b"Authorization: Bearer \xff"],
                         ids=["token-utf8", "token-latin1", "key-latin1", "bearer-latin1"])
def test_credentials_that_are_not_ascii_are_refused_not_crashed_over_rest(service: Service, header: bytes) -> None:
    # hmac.compare_digest raises TypeError on non-ASCII strings, str.encode on the bytes aiohttp could not
    # decode: each was a 500.
    assert _raw_get(service, "/api/v1/galleries", header)[0] == 401
    assert _raw_get(service, "/metrics", header)[0] == 401


def test_credentials_that_are_not_ascii_cost_the_stomp_api_nothing(service: Service) -> None:
    # The API's consumer takes `api.stomp_prefetch` (8) requests at a time and acknowledges each once
    # answered; these raised instead of answering, so eight of them stopped the STOMP API for every tenant.
    for _ in range(10):
        reply = service.bus.request(API, b"", {"method": "GET", "path": "/api/v1/galleries",
                                               "authorization": "Bearer fwt.a.\u00e9"}, timeout_s=30)
        assert reply.status == 401 and reply.json()["code"] == "AUTH_FAILED"
    assert service.call(service.globex, "GET", "/api/v1/galleries").status == 200
    for credentials in ({"passcode": "fwt.a.\u00e9"}, {"authorization": "Bearer fwt.a.\u00e9"},
                        {"passcode": "fwk_0123456789abcdef_\u00e9"}):
        raw = RawStomp(service.server.stomp_port)
        raw.send_frame("CONNECT", {"accept-version": "1.2", "host": "/", "login": "app", **credentials})
        refused = raw.recv()
        assert (refused.command, refused.headers["message"]) == ("ERROR", "access refused"), credentials


def test_a_lone_surrogate_in_a_json_string_is_malformed_json(service: Service) -> None:
    # json.loads takes "\ud800"; encoding, storing or hashing it then failed: 500s on subjects, keys, groups
    # and login.
    http = service.server.http(api_key=service.acme["api_key"])
    assert http.call("POST", "/api/v1/galleries", {"name": "surrogates"}).status == 201
    for path, body in (("/api/v1/galleries/surrogates/subjects", b'{"name": "\\ud800"}'),
                       ("/api/v1/galleries/surrogates/subjects", b'{"name": "ok", "meta": {"\\udc00": 1}}'),
                       ("/api/v1/keys", b'{"name": "\\ud800"}'),
                       ("/api/v1/groups/0123456789abcdef0123456789abcdef/merge", b'{"groups": ["\\uDBFF"]}')):
        reply = http.call("POST", path, raw=body)
        assert reply.status == 400 and reply.body["code"] == "MALFORMED_JSON", (path, reply.body)
        over = service.bus.request(API, body, {"method": "POST", "path": path,
                                               "x-api-key": service.acme["api_key"]}, timeout_s=30)
        assert over.status == 400 and over.json()["code"] == "MALFORMED_JSON", (path, over.json())
    login = service.server.http().call("POST", "/api/v1/login", raw=json.dumps(
        {"client_id": service.acme["client_id"], "client_secret": "x"}).replace('"x"', '"\\ud800"').encode())
    assert login.status == 400 and login.body["code"] == "MALFORMED_JSON", login.body
    paired = http.call("POST", "/api/v1/galleries/surrogates/subjects", raw='{"name": "\\ud83d\\ude00"}'.encode())
    assert paired.status == 201 and paired.body["name"] == "\U0001f600"  # a surrogate pair is a character


def test_an_unknown_face_is_grouped_for_the_tenant_whose_camera_saw_it(service: Service) -> None:
    # Grouping looked the camera's owner up when it took the face off its queue: a camera id removed and
    # registered by another tenant meanwhile handed the old camera's faces (crops of its people) to the new
    # owner. Workers mark each face with their camera's tenant; grouping takes that.
    assert service.call(service.globex, "POST", "/api/v1/cameras",
                        {"id": "passed-on", "url": "rtsp://198.51.100.7:1/x", "enabled": False}).status == 201
    model = service.server.http().call("GET", "/api/v1/health").body["embedding_model"]
    vector = np.random.default_rng(3).standard_normal(512).astype(np.float32)
    event = unknown("passed-on", 7, vector / np.linalg.norm(vector), None, id="e" * 32, model_id=model).to_json()
    try:
        service.bus.publish("/queue/facewatch.unknown-faces", event, {"tenant": service.acme["tenant_id"]},
                            receipt=True)

        def groups(tenant: dict[str, str]) -> int:
            listed = service.server.http(api_key=tenant["api_key"]).call("GET", "/api/v1/groups?camera=passed-on")
            return int(listed.body["total"])

        eventually(lambda: groups(service.acme) == 1, timeout_s=30, what="acme's face grouped")
        assert groups(service.globex) == 0
    finally:
        assert service.call(service.globex, "DELETE", "/api/v1/cameras/passed-on").status == 204
