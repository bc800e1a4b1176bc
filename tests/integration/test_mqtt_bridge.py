"""The MQTT bridge against the machine's Mosquitto: in process (topics, retained status, availability and
the will, reconnects, the bounded queue, TLS with a password) and in a real `facewatch serve` whose file
camera's events arrive on MQTT."""

from __future__ import annotations

import asyncio
import gc
import getpass
import json
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from events import CameraStatus
from facewatch.client import BrokerAddress, Facewatch
from facewatch.config import ConfigError, parse_config
from facewatch.mqtt import BridgeStats, BrokerOptions, MqttBridge, Routing, broker_options
from tests.event_factory import recognized
from tests.waiting import eventually

from .mqtt import Subscriber, TcpProxy, require_mosquitto
from .repo_server import RepoServer, enrol, free_port
from .test_tls import TlsFiles, tls_files  # noqa: F401  (a fixture)


@pytest.fixture
def mosquitto() -> tuple[str, int]:
    return require_mosquitto()


@pytest.fixture
def prefix() -> str:
    """A topic prefix of the test's own: the machine's broker is shared."""
    return f"fwtest/{uuid.uuid4().hex[:10]}"


def _options(port: int, **kw: Any) -> BrokerOptions:
    defaults: dict[str, Any] = dict(host="127.0.0.1", port=port, client_id=f"fwtest-{uuid.uuid4().hex[:8]}",
                                    reconnect_initial_s=0.05, reconnect_max_s=0.2, timeout_s=2.0)
    return BrokerOptions(**(defaults | kw))


_recognised = recognized


async def _when(what: str, done: Any, timeout_s: float = 15.0) -> None:
    """Waits for a fact the bridge announces nowhere (a counter), off the event loop the bridge runs on."""
    await asyncio.to_thread(eventually, done, timeout_s=timeout_s, what=what)


async def _in_thread(call: Any, *args: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(call, *args, **kw)


def _is(topic: str, payload: bytes | None = None) -> Any:
    return lambda r: r.topic == topic and (payload is None or r.payload == payload)


def test_events_status_and_availability_under_the_prefix(mosquitto: tuple[str, int], prefix: str) -> None:
    sub = Subscriber(*mosquitto, f"{prefix}/#")
    status = CameraStatus(camera="door", state="running", pid=1)

    async def scenario() -> MqttBridge:
        bridge = MqttBridge(_options(mosquitto[1]), Routing.of(prefix, cameras=["door"]))
        bridge.start()
        await _in_thread(sub.wait_for, "online", _is(f"{prefix}/available", b"online"))
        bridge.on_event(status)
        bridge.on_event(_recognised("yard", 1))  # not a bridged camera
        bridge.on_event(_recognised("door", 2))
        await _in_thread(sub.wait_for, "the recognition", _is(f"{prefix}/door/face.recognized"))
        await bridge.stop()
        return bridge

    bridge = asyncio.run(scenario())
    sub.wait_for("offline", _is(f"{prefix}/available", b"offline"))
    sub.close()
    topics = [r.topic for r in sub.received]
    assert topics == [f"{prefix}/available", f"{prefix}/door/status", f"{prefix}/door/face.recognized",
                      f"{prefix}/available"], topics
    event = sub.on(f"{prefix}/door/face.recognized")[0].json()
    assert event["track"] == 2 and event["subject"]["id"] == "ann" and "crop" not in event
    assert bridge.stats.published == 2 and bridge.stats.dropped == 0
    # Retained: a subscriber that comes later gets the camera's last status and the availability at once.
    late = Subscriber(*mosquitto, f"{prefix}/#")
    got = late.wait_for("the retained messages", lambda r: r.retain, count=2)
    late.close()
    assert {(r.topic, r.payload) for r in got} == {
        (f"{prefix}/available", b"offline"),
        (f"{prefix}/door/status", json.dumps(status.to_json(), separators=(",", ":")).encode())}
    _clear_retained(mosquitto, prefix, ["available", "door/status"])


def test_reconnects_keeps_order_drops_the_oldest_and_the_will_says_offline(mosquitto: tuple[str, int],
                                                                            prefix: str) -> None:
    sub = Subscriber(*mosquitto, f"{prefix}/#")

    async def scenario() -> MqttBridge:
        proxy = await TcpProxy(mosquitto).start()  # down: the broker cannot be reached
        bridge = MqttBridge(_options(proxy.port), Routing.of(prefix), max_queue=3)
        bridge.start()
        try:
            await _when("a failed connection", lambda: bridge.stats.failures >= 1)
            for track in range(1, 6):
                bridge.on_event(_recognised("door", track))
            await _when("two events dropped", lambda: bridge.stats.dropped == 2)
            proxy.up = True  # the broker is back: the three newest go out, in order
            await _in_thread(sub.wait_for, "three events", _is(f"{prefix}/door/face.recognized"), count=3)
            proxy.cut()  # the connection dies without a DISCONNECT: the broker publishes the will
            await _in_thread(sub.wait_for, "the will", _is(f"{prefix}/available", b"offline"))
            await _when("the lost connection noticed", lambda: not bridge.stats.connected)
            bridge.on_event(_recognised("door", 6))  # waits in the queue
            proxy.up = True
            await _in_thread(sub.wait_for, "the event sent after reconnecting", _is(f"{prefix}/door/face.recognized"),
                             count=4)
        finally:
            await bridge.stop()
            await proxy.close()
        return bridge

    bridge = asyncio.run(scenario())
    sub.wait_for("offline at stop", _is(f"{prefix}/available", b"offline"), count=2)
    sub.close()
    tracks = [r.json()["track"] for r in sub.on(f"{prefix}/door/face.recognized")]
    assert tracks == [3, 4, 5, 6]
    availability = [r.payload for r in sub.on(f"{prefix}/available")]
    assert availability == [b"online", b"offline", b"online", b"offline"], availability
    assert bridge.stats.dropped == 2 and bridge.stats.published == 4 and bridge.stats.connections == 2
    assert bridge.stats.failures >= 2
    _clear_retained(mosquitto, prefix, ["available"])


def _clear_retained(broker: tuple[str, int], prefix: str, topics: list[str]) -> None:
    """An empty retained message deletes the retained one: the machine's broker keeps nothing of ours."""
    import paho.mqtt.publish

    paho.mqtt.publish.multiple([{"topic": f"{prefix}/{t}", "payload": b"", "retain": True} for t in topics],
                               hostname=broker[0], port=broker[1])


@pytest.fixture
def secure_mosquitto(tmp_path: Path, tls_files: TlsFiles) -> Iterator[int]:  # noqa: F811  (the fixture)
    """A Mosquitto of the test's own: TLS only, a user with a password, on a free port."""
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        require_mosquitto()  # skips (or fails in CI) with the reason when Mosquitto is not installed
        pytest.skip("mosquitto_passwd is missing")
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "bridge", "s3cret-pass"], check=True,
                   capture_output=True, timeout=30)
    port = free_port()
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"cafile {tls_files.ca}\ncertfile {tls_files.cert}\nkeyfile {tls_files.key}\n"
        # Run as root it would drop to the user mosquitto, who cannot read the test's private files.
        f"persistence false\nlog_dest stderr\nuser {getpass.getuser()}\n")
    with (tmp_path / "mosquitto.log").open("w") as log:
        proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                                stderr=log)
    try:
        def listening() -> bool:
            assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
            return "Opening ipv4 listen socket" in (tmp_path / "mosquitto.log").read_text()

        eventually(listening, timeout_s=15, interval_s=0.05, what="the test's Mosquitto to listen")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tls_and_a_password_from_the_config(secure_mosquitto: int, tls_files: TlsFiles,  # noqa: F811
                                            prefix: str) -> None:
    sub = Subscriber("127.0.0.1", secure_mosquitto, f"{prefix}/#", tls=tls_files.client(), username="bridge",
                     password="s3cret-pass")
    section = {"host": "127.0.0.1", "port": secure_mosquitto, "username": "bridge", "password": "s3cret-pass",
               "tls": {"enabled": True, "ca_file": str(tls_files.ca)}, "reconnect_initial_s": 0.05,
               "reconnect_max_s": 0.2}
    good = broker_options(parse_config({"mqtt": section}, environ={}).mqtt, "node-a")
    wrong = broker_options(parse_config({"mqtt": section | {"password": "wrong"}}, environ={}).mqtt, "node-b")
    untrusting = broker_options(parse_config({"mqtt": section | {"tls": {"enabled": True}}}, environ={}).mqtt,
                                "node-c")
    assert good.client_id == "facewatch-node-a" and good.tls is not None

    async def scenario() -> tuple[BridgeStats, BridgeStats, BridgeStats]:
        bridges = [MqttBridge(options, Routing.of(prefix)) for options in (good, wrong, untrusting)]
        for bridge in bridges:
            bridge.start()
        bridges[0].on_event(_recognised("door", 1))
        await _in_thread(sub.wait_for, "the event over TLS", _is(f"{prefix}/door/face.recognized"))
        await _when("the refused ones to have tried twice", lambda: all(b.stats.failures >= 2 for b in bridges[1:]))
        for bridge in bridges:
            await bridge.stop()
        return bridges[0].stats, bridges[1].stats, bridges[2].stats

    # paho leaves the socket of a failed TLS handshake unclosed (paho.mqtt.client _ssl_wrap_socket); CPython
    # closes it when it is collected, with a ResourceWarning: expected from the bridge that trusts no such CA.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        ok, refused, unverified = asyncio.run(scenario())
        gc.collect()
    sub.close()
    assert ok.connections == 1 and ok.published == 1
    assert refused.connections == 0 and unverified.connections == 0
    # A CA file that is not there stops serve at start, naming the key.
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file: cannot read"):
        broker_options(parse_config({"mqtt": section | {"tls": {"enabled": True, "ca_file": "/nope"}}},
                                    environ={}).mqtt, "n")


@pytest.mark.models
@pytest.mark.data
def test_a_file_cameras_events_arrive_on_mqtt_from_serve(mosquitto: tuple[str, int], prefix: str, tmp_path: Path,
                                                         models_dir: Path, shared_data: Path) -> None:
    sub = Subscriber(*mosquitto, f"{prefix}/#")
    server = RepoServer(tmp_path / "serve", models_dir, None,
                        FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(shared_data / "video")]),
                        FACEWATCH_RUNTIME__ANALYSIS_PROCESSES="0", FACEWATCH_MQTT__ENABLED="true",
                        FACEWATCH_MQTT__PORT=str(mosquitto[1]), FACEWATCH_MQTT__TOPIC_PREFIX=prefix,
                        FACEWATCH_MQTT__CAMERAS='["mqtt-stage"]')
    key = server.create_tenant("mqtt")["api_key"]
    server.start()
    try:
        sub.wait_for("serve's bridge online", _is(f"{prefix}/available", b"online"))
        enrol(server.http(api_key=key), shared_data, "hamilton", ["lin_manuel_miranda", "alex_lacamoire"])
        with Facewatch.connect(broker=BrokerAddress("127.0.0.1", server.stomp_port, "t", key), api_key=key) as fw:
            fw.add_camera("mqtt-stage", f"file://{shared_data / 'video/short_hamilton_clip.mp4'}",
                          galleries=["hamilton"])
            recognised = sub.wait_for("a recognition on MQTT", _is(f"{prefix}/mqtt-stage/face.recognized"), 120)
            event = recognised[0].json()
            assert event["camera"] == "mqtt-stage" and "crop" not in event and not recognised[0].retain
            assert event["subject"]["id"] in {"lin_manuel_miranda", "alex_lacamoire"}
            ended = sub.wait_for("the end of the file", lambda r: r.topic == f"{prefix}/mqtt-stage/status"
                                 and r.json().get("state") == "stopped", 120)
            assert ended[0].json()["reason"] == "end of file"
            fw.remove_camera("mqtt-stage")
        states = [r.json()["state"] for r in sub.on(f"{prefix}/mqtt-stage/status")]
        assert states[:2] == ["starting", "running"]
        metrics = server.http(token=(server.data_dir / "metrics-token").read_text().strip()).call("GET", "/metrics")
        assert "facewatch_mqtt_connected 1.0" in metrics.raw.decode()
        assert "facewatch_mqtt_dropped_total 0.0" in metrics.raw.decode()
    finally:
        server.stop()  # SIGTERM: the bridge says offline itself before it disconnects
    sub.wait_for("offline at shutdown", _is(f"{prefix}/available", b"offline"))
    sub.close()
    assert f"mqtt mqtt://127.0.0.1:{mosquitto[1]} under {prefix}/ (mqtt-stage)" in server.log.read_text()
    _clear_retained(mosquitto, prefix, ["available", "mqtt-stage/status"])
