"""TLS on every listener: HTTPS + WSS on the API port, STOMP on broker.tls_port, BusClient over stomps://.

The certificates are made here with the openssl command: a test CA and a server
certificate it signs for 127.0.0.1 and localhost. Clients trust the CA file
only; without it every TLS connection must fail verification.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import stomp

from api.stomp import API_QUEUE
from broker.auth import StaticAuthenticator
from broker.client import BrokerAddress, BusClient, BusError
from broker.core import BrokerLimits
from broker.embedded import BrokerThread, EmbeddedBroker
from broker.frames import Frame, encode_frame
from broker.parser import FrameParser
from facewatch.config import TlsConfig
from facewatch.tls import server_context
from tests.conftest import ROOT
from tests.waiting import eventually

from .conftest import USERS
from .repo_server import free_port

_CA_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = ext
prompt = no
[dn]
CN = facewatch test CA
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    def server(self) -> ssl.SSLContext:
        return server_context(TlsConfig(cert_file=str(self.cert), key_file=str(self.key)), "test")

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make the test certificates")
    d = tmp_path_factory.mktemp("tls")
    (d / "ca.cnf").write_text(_CA_CONFIG)
    (d / "server.ext").write_text(_SERVER_EXTENSIONS)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for cmd in (
        ["req", "-x509", "-config", "ca.cnf", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
        ["req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "2",
         "-days", "2", "-extfile", "server.ext", "-out", "server.pem"],
    ):
        subprocess.run(["openssl", *cmd], cwd=d, check=True, capture_output=True, timeout=30)
    return TlsFiles(d / "ca.pem", d / "server.pem", d / "server.key")


@pytest.fixture
def tls_broker(tls_files: TlsFiles) -> Iterator[BrokerThread]:
    """The embedded broker with no plain listener on its host, TLS on its TCP port and its WebSocket."""
    broker = EmbeddedBroker(BrokerLimits(), StaticAuthenticator(USERS), port=None, tls_port=0,
                            ssl_context=tls_files.server())
    thread = BrokerThread(broker, websocket_ssl=tls_files.server()).start()
    yield thread
    thread.stop()


class _Collector(stomp.ConnectionListener):  # type: ignore[misc]  # stomp.py is untyped
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.receipts: set[str] = set()
        self.changed = threading.Condition()

    def on_message(self, frame: Any) -> None:
        with self.changed:
            self.messages.append(frame.body)
            self.changed.notify_all()

    def on_receipt(self, frame: Any) -> None:
        with self.changed:
            self.receipts.add(frame.headers["receipt-id"])
            self.changed.notify_all()

    def wait(self, what: str, done: Any) -> None:
        with self.changed:
            assert self.changed.wait_for(done, timeout=10), f"no {what}"


def test_stomp_py_over_tls_connects_subscribes_sends_and_receives(tls_broker: BrokerThread,
                                                                   tls_files: TlsFiles) -> None:
    port = tls_broker.broker.tls_port
    assert port is not None
    conn = stomp.Connection([("127.0.0.1", port)], vhost="/", auto_decode=False)
    conn.set_ssl(for_hosts=[("127.0.0.1", port)], ca_certs=str(tls_files.ca))
    collector = _Collector()
    conn.set_listener("collector", collector)
    conn.connect("guest", "guest", wait=True)
    try:
        assert conn.transport.socket.version() in ("TLSv1.2", "TLSv1.3")
        conn.subscribe("/topic/tls.check", id="1", headers={"receipt": "sub"})
        collector.wait("RECEIPT for SUBSCRIBE", lambda: "sub" in collector.receipts)
        conn.send("/topic/tls.check", b"over tls")
        collector.wait("MESSAGE", lambda: collector.messages)
        assert collector.messages == [b"over tls"]
    finally:
        conn.disconnect()


def test_tls_port_refuses_plain_stomp_and_untrusting_clients(tls_broker: BrokerThread) -> None:
    port = tls_broker.broker.tls_port
    assert port is not None
    # Plain STOMP on the TLS port: the server reads it as a broken handshake and hangs up, never CONNECTED.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(encode_frame(Frame("CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest",
                                                   "passcode": "guest"})))
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
        assert b"CONNECTED" not in answer
    # A client that trusts only the system's CAs refuses the test certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    # The plain listener moved to loopback (broker.port: null) and still serves local clients.
    assert tls_broker.broker.plain_host == "127.0.0.1"
    local = BusClient(BrokerAddress("127.0.0.1", tls_broker.broker.port, "guest", "guest"))
    local.connect(timeout_s=10)
    local.close()


async def _wss_round_trip(url: str, client_ssl: ssl.SSLContext, login: str, passcode: str) -> bytes:
    """Over STOMP on WebSocket: CONNECT, SUBSCRIBE to a new topic, SEND to it; returns the MESSAGE's body."""
    parser = FrameParser(commands=frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"}))
    frames: list[Frame] = []

    async def send(ws: aiohttp.ClientWebSocketResponse, command: str, headers: dict[str, str],
                   body: bytes = b"") -> None:
        await ws.send_str(encode_frame(Frame(command, headers, body)).decode())

    async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> Frame:
        while not frames:
            msg = await asyncio.wait_for(ws.receive(), 10)
            frames.extend(parser.feed(msg.data.encode() if msg.type == aiohttp.WSMsgType.TEXT else msg.data))
        return frames.pop(0)

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=("v12.stomp",), ssl=client_ssl) as ws:
            sock = ws.get_extra_info("socket")
            await send(ws, "CONNECT", {"accept-version": "1.2", "host": "/", "login": login, "passcode": passcode,
                                       "heart-beat": "0,0"})
            connected = await next_frame(ws)
            assert connected.command == "CONNECTED", connected
            parser.version = connected.headers["version"]
            topic = f"/topic/wss.{uuid.uuid4().hex[:8]}"
            await send(ws, "SUBSCRIBE", {"destination": topic, "id": "0", "receipt": "sub"})
            assert (await next_frame(ws)).headers["receipt-id"] == "sub"
            await send(ws, "SEND", {"destination": topic}, b"over wss")
            message = await next_frame(ws)
            assert message.command == "MESSAGE", message
    # A TLS close takes a close_notify from each side: wait for the socket to close, or
    # asyncio.run() closes the loop with the transport still open (a ResourceWarning).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while sock.fileno() != -1:
        assert loop.time() < deadline, "the client's TLS socket did not close"
        await asyncio.sleep(0.01)
    return message.body


def test_stomp_over_wss_with_aiohttp(tls_broker: BrokerThread, tls_files: TlsFiles) -> None:
    url = f"wss://127.0.0.1:{tls_broker.websocket_port}/stomp"
    assert asyncio.run(_wss_round_trip(url, tls_files.client(), "guest", "guest")) == b"over wss"
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        asyncio.run(_wss_round_trip(url, ssl.create_default_context(), "guest", "guest"))


def test_bus_client_over_stomps(tls_broker: BrokerThread, tls_files: TlsFiles) -> None:
    port = tls_broker.broker.tls_port
    for scheme in ("stomps", "stomp+ssl"):
        address = BrokerAddress.parse(f"{scheme}://guest:guest@localhost:{port}/", ca_file=str(tls_files.ca))
        assert address.tls and address.ca_file == str(tls_files.ca)
        client = BusClient(address)
        client.connect(timeout_s=10)
        got: list[bytes] = []
        client.subscribe("/topic/bus.tls", lambda m: got.append(m.body), receipt=True)
        client.publish("/topic/bus.tls", b"hello", receipt=True)
        eventually(lambda: got, timeout_s=10, what="the message back over stomps://")
        client.close()
        assert got == [b"hello"]
    # Without the CA, the system's CAs do not vouch for the test certificate.
    untrusting = BusClient(BrokerAddress.parse(f"stomps://guest:guest@localhost:{port}/"))
    with pytest.raises(BusError):
        untrusting.connect(timeout_s=1)


def test_serve_refuses_to_start_with_unreadable_tls_files(tls_files: TlsFiles, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEWATCH_")}
    env.update(FACEWATCH_DATA_DIR=str(tmp_path))
    cases = [
        ({"FACEWATCH_API__TLS__CERT_FILE": str(tmp_path / "missing.pem"),
          "FACEWATCH_API__TLS__KEY_FILE": str(tls_files.key)}, "api.tls.cert_file: cannot read"),
        ({"FACEWATCH_BROKER__TLS_PORT": "0", "FACEWATCH_BROKER__TLS__CERT_FILE": str(tls_files.ca),
          "FACEWATCH_BROKER__TLS__KEY_FILE": str(tls_files.key)}, "KEY_VALUES_MISMATCH"),
        ({"FACEWATCH_BROKER__TLS_PORT": "0"}, "broker: Value error, tls_port needs tls.cert_file and tls.key_file"),
    ]
    for extra, expected in cases:
        proc = subprocess.run([sys.executable, "-m", "facewatch", "serve"], env=env | extra, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def _https_json(url: str, context: ssl.SSLContext) -> Any:
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        return json.loads(resp.read())


@pytest.mark.models
def test_serve_over_tls_everywhere_with_no_plain_stomp_port(models_dir: Path, tls_files: TlsFiles,
                                                            tmp_path: Path) -> None:
    port, tls_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEWATCH_")}
    env.update(
        FACEWATCH_DATA_DIR=str(tmp_path), FACEWATCH_MODELS__DIR=str(models_dir), FACEWATCH_API__PORT=str(port),
        FACEWATCH_API__TLS__CERT_FILE=str(tls_files.cert), FACEWATCH_API__TLS__KEY_FILE=str(tls_files.key),
        FACEWATCH_BROKER__PORT="null", FACEWATCH_BROKER__TLS_PORT=str(tls_port),
        FACEWATCH_BROKER__TLS__CERT_FILE=str(tls_files.cert), FACEWATCH_BROKER__TLS__KEY_FILE=str(tls_files.key),
        # Only the API and the broker: no camera workers, no analysis processes on a small test machine.
        FACEWATCH_WATCHER__ENABLED="false", FACEWATCH_GROUPING__ENABLED="false",
        FACEWATCH_RUNTIME__ANALYSIS_PROCESSES="0",
    )
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "facewatch", "serve"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, cwd=ROOT)
    health = f"https://127.0.0.1:{port}/api/v1/health"
    try:
        def answers() -> Any:
            assert server.poll() is None, log_file.read_text()
            return _https_json(health, tls_files.client())

        assert eventually(answers, timeout_s=90, interval_s=0.2, ignoring=(OSError,),
                          what="serve to answer over HTTPS")["status"] == "ok"
        # Without the CA the certificate is not trusted; plain HTTP to the TLS port gets no HTTP answer.
        untrusting = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ssl.create_default_context())
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                untrusting.request("GET", "/api/v1/health")
            with pytest.raises((http.client.HTTPException, OSError)):
                plain.request("GET", "/api/v1/health")
                plain.getresponse()
        finally:
            untrusting.close()
            plain.close()
        creds = json.loads((tmp_path / "broker-credentials.json").read_text())
        # The STOMP API answers over the TLS port: the API's own bus client is connected
        # (on the loopback listener, since broker.port is null).
        bus = BusClient(BrokerAddress.parse(f"stomps://{creds['login']}:{creds['passcode']}@127.0.0.1:{tls_port}/",
                                            ca_file=str(tls_files.ca)))
        bus.connect(timeout_s=10)
        try:
            reply = bus.request(API_QUEUE, b"", {"method": "GET", "path": "/api/v1/health"}, timeout_s=30)
            assert reply.status == 200 and reply.json()["status"] == "ok"
        finally:
            bus.close()
        # STOMP over WSS shares the HTTPS listener.
        wss = f"wss://127.0.0.1:{port}/stomp"
        assert asyncio.run(_wss_round_trip(wss, tls_files.client(), creds["login"], creds["passcode"])) == b"over wss"
        assert "loopback only" in log_file.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 0, log_file.read_text()[-3000:]
