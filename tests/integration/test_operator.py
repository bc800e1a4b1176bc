"""The operator's tools on a real `facewatch serve`: `facewatch cameras` and `enrol` (through
facewatch.client), GET /metrics, JSON logs with start and shutdown lines, a finished file camera that
stays stopped across a restart, the REST 404 for camera paths, groups listing their cameras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from events import CameraStatus, FaceEvent, TrackEnded
from facewatch.client import ApiCallError, BrokerAddress, EventLog, Facewatch
from tests.waiting import eventually

from .repo_server import ROOT, Http, RepoServer, free_port

pytestmark = [pytest.mark.models, pytest.mark.data]

CLIP = "short_hamilton_clip.mp4"


class Operator:
    """The service, one tenant, and a client acting as that tenant."""

    def __init__(self, server: RepoServer, tenant: dict[str, str]) -> None:
        self.server = server
        self.tenant = tenant
        self.key = tenant["api_key"]
        self.fw = self.client()

    def client(self) -> Facewatch:
        return Facewatch.connect(api_url=self.server.base,
                                 broker=BrokerAddress("127.0.0.1", self.server.stomp_port, "app", self.key),
                                 api_key=self.key)

    def cli(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "facewatch", *args],
                              env={**self.server.env, "FACEWATCH_API_KEY": self.key}, capture_output=True, text=True,
                              timeout=300, cwd=cwd or ROOT)  # where the service runs: its ./config.yaml

    def metrics(self, token: str | None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        reply = Http(self.server.base, headers).call("GET", "/metrics")
        return reply.status, reply.raw.decode()

    @property
    def token(self) -> str:
        return (self.server.data_dir / "metrics-token").read_text().strip()


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, shared_data: Path) -> Iterator[Operator]:
    server = RepoServer(tmp_path_factory.mktemp("operator"), models_dir, None,
                        FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(shared_data / "video")]),
                        FACEWATCH_LOG_FORMAT="json", FACEWATCH_API__MAX_BODY_BYTES="1000000",
                        FACEWATCH_RUNTIME__ANALYSIS_PROCESSES="0")
    made = server.cli("tenants", "create", "operator")
    assert made.returncode == 0, made.stderr
    assert made.stdout.endswith("}\n")  # a final newline
    server.start()
    op = Operator(server, json.loads(made.stdout))
    yield op
    op.fw.close()
    server.stop()


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels}`` in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        head, _, rest = series.partition("{")
        if head != name:
            continue
        found = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return None


def test_cameras_from_the_cli_over_stomp(op: Operator, shared_data: Path) -> None:
    clip = f"file://{shared_data / 'video' / CLIP}"
    events = EventLog()
    # A tenant may read a camera's topic once the camera is its own: the operator's credential listens
    # before the camera exists, so no event of its short life is missed.
    creds = json.loads((op.server.data_dir / "broker-credentials.json").read_text())
    watching = Facewatch.connect(broker=BrokerAddress("127.0.0.1", op.server.stomp_port, creds["login"],
                                                      creds["passcode"]))
    watching.camera_events("clip", events)  # in place before the camera starts
    added = op.cli("cameras", "add", "clip", clip, "--gallery", "nobody", "--set", "max_fps=4")
    assert added.returncode == 0, added.stderr
    assert "camera clip registered (started); events on /topic/watcher.clip" in added.stdout
    assert "stomp" not in added.stderr.lower()  # no connection chatter for a person
    listed = op.cli("cameras", "list")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split()[:3] == ["ID", "ENABLED", "STATE"]
    assert "clip" in listed.stdout and clip in listed.stdout
    shown = json.loads(op.cli("cameras", "show", "clip").stdout)
    assert shown["max_fps"] == 4 and shown["galleries"] == ["nobody"] and shown["loop"] is False
    # Played to its end: stopped with the reason, and disabled, so a restart does not play it again.
    last = events.wait_for(lambda e: isinstance(e, CameraStatus) and e.state == "stopped" and e.reason == "end of file",
                           90)
    watching.close()
    # Every track it reported on ended with its summary before that last word (a track still in view at the
    # end included): a sighting's time range is closed by it. (Tracks decided but never announced end too.)
    before = events.events[:events.events.index(last)]
    reported = {e.track for e in before if isinstance(e, FaceEvent)}
    assert reported and reported <= {e.track for e in before if isinstance(e, TrackEnded)}
    eventually(lambda: not op.fw.camera("clip").enabled, timeout_s=10, what="the finished camera disabled")
    status = json.loads(op.cli("cameras", "status", "clip").stdout)
    assert status["state"] == "stopped" and status["reason"] == "end of file" and status["stats"]["analysed"] > 0
    # The groups of its unknown faces name it in the list, as in each group.
    groups = eventually(lambda: op.fw.groups(camera="clip"), timeout_s=30, what="groups from the clip")
    assert all(g.cameras == ("clip",) for g in groups)
    assert op.fw.group(groups[0].id).cameras == ("clip",)
    # Edit, start, stop, remove: each says what it did.
    edited = op.cli("cameras", "edit", "clip", "--set", "max_fps=2", "--set", "name=The clip")
    assert edited.returncode == 0, edited.stderr
    assert json.loads(edited.stdout)["name"] == "The clip" and op.fw.camera("clip").settings["max_fps"] == 2
    assert op.cli("cameras", "start", "clip").stdout.strip() == "camera clip started"
    assert op.fw.camera("clip").enabled
    assert op.cli("cameras", "stop", "clip").stdout.strip() == "camera clip stopped"
    assert op.fw.camera_status("clip").state == "stopped"
    # A file outside watcher.file_roots: the message names the key and where this machine's config is.
    refused = op.cli("cameras", "add", "etc", "file:///etc/hostname")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "watcher.file_roots" in refused.stderr and "FACEWATCH_WATCHER__FILE_ROOTS" in refused.stderr
    assert "this machine's config" in refused.stderr
    # No key: one line saying how to give one.
    keyless = subprocess.run([sys.executable, "-m", "facewatch", "cameras", "list"], env=op.server.env,
                             capture_output=True, text=True, timeout=60, cwd=op.server.data_dir)
    assert keyless.returncode == 1 and "--api-key" in keyless.stderr and "FACEWATCH_API_KEY" in keyless.stderr
    # Over REST the camera paths answer 404 with where cameras live.
    rest = op.server.http(api_key=op.key).call("POST", "/api/v1/cameras", {"id": "x", "url": clip})
    assert rest.status == 404 and rest.body["code"] == "NOT_FOUND"
    assert "/queue/facewatch.api" in rest.body["reason"] and "facewatch cameras" in rest.body["reason"]
    with pytest.raises(ApiCallError) as missing:
        op.fw.camera("nope")
    assert missing.value.code == "NOT_FOUND"


def test_enrol_a_folder_with_progress_from_the_job_topic(op: Operator, shared_data: Path) -> None:
    folder = shared_data / "faces" / "enroll"
    images = [p for p in folder.rglob("*") if p.is_file()]
    # Over api.max_body_bytes (1 MB here) in all: sent as several jobs, one bar.
    assert sum(p.stat().st_size for p in images) > 2_000_000
    done = op.cli("enrol", str(folder), "--gallery", "people", "--create")
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("enrolling into people [")]
    assert progress and "100%" in progress[-1] and f"{len(images)}/{len(images)}" in progress[-1]
    assert len(progress) >= 3  # 0 %, some steps, 100 %
    assert f"face(s) enrolled into people from {len(images)} image(s)" in done.stdout
    subjects = {s.id: s for s in op.fw.subjects("people")}
    assert set(subjects) >= {"biden", "obama", "lin_manuel_miranda", "kit_harington"}
    assert sum(s.faces for s in subjects.values()) >= len(images) - 2  # a photo may be refused (and listed)
    missing = op.cli("enrol", str(folder / "no-such"), "--gallery", "people")
    assert missing.returncode == 1 and "neither a folder" in missing.stderr


def test_metrics_take_their_own_token_and_cover_the_parts(op: Operator) -> None:
    assert op.metrics(None)[0] == 401
    assert op.metrics(op.key)[0] == 401  # a tenant's key does not open them
    op.fw.add_camera("idle", "rtsp://camera.invalid/stream", enabled=False)
    op.fw.create_gallery("metrics")
    status, text = op.metrics(op.token)
    assert status == 200
    assert _metric(text, "facewatch_build_info") == 1
    assert _metric(text, "facewatch_camera_state", camera="idle", state="stopped") == 1
    assert _metric(text, "facewatch_camera_enabled", camera="idle") == 0
    assert (_metric(text, "facewatch_api_requests_total", transport="stomp", method="POST", route="/api/v1/cameras",
                    status="201") or 0) >= 1
    assert (_metric(text, "facewatch_api_requests_total", transport="rest", method="POST",
                    route="/api/v1/galleries", status="201") or 0) >= 1
    assert _metric(text, "facewatch_api_request_seconds_count", transport="rest", route="/api/v1/galleries")
    assert (_metric(text, "facewatch_broker_connections") or 0) >= 2  # the server's bus client and ours
    assert _metric(text, "facewatch_broker_queue_messages", queue="/queue/facewatch.api") is not None
    assert (_metric(text, "facewatch_repo_galleries") or 0) >= 1
    assert _metric(text, "facewatch_reembed_pending", store="repo") == 0
    assert "facewatch_jobs" in text and "facewatch_camera_analysis_seconds" in text
    if (_metric(text, "facewatch_camera_frames_analysed_total", camera="clip") or 0) > 0:  # after the camera test
        assert (_metric(text, "facewatch_camera_analysis_seconds_count", camera="clip") or 0) > 0
        assert _metric(text, "facewatch_camera_events_total", camera="clip", type="camera.status")
    if (_metric(text, "facewatch_repo_faces") or 0) > 0:  # after the enrolment test
        assert (_metric(text, "facewatch_jobs", kind="enrol", status="done") or 0) >= 1
    op.fw.remove_camera("idle")


def test_json_logs_with_start_and_shutdown_lines_and_a_finished_camera_stays_stopped(op: Operator) -> None:
    op.fw.close()
    op.server.stop()  # SIGTERM: a clean shutdown
    lines = [json.loads(line) for line in op.server.log.read_text().splitlines() if line.strip()]
    messages = [line["message"] for line in lines if line.get("logger", "").startswith("facewatch")]
    start = next(m for m in messages if m.startswith("facewatch 0.") and " starting: " in m)
    assert "data_dir" in start and "broker embedded" in start and "metrics /metrics" in start
    assert any(m.startswith("facewatch shutting down") for m in messages)
    assert messages[-1].startswith("facewatch ") and "stopped cleanly" in messages[-1]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    # Started again: the camera whose file ended is not played again.
    op.server.start()
    op.fw = op.client()
    status = op.fw.camera_status("clip")
    assert status.state == "stopped" and status.worker is None and not status.enabled


def test_every_command_finds_the_services_config_from_any_folder(tmp_path: Path, models_dir: Path) -> None:
    """serve started with --config from one folder; tenants created from another through FACEWATCH_CONFIG
    land in its database (paths relative to the file), and their keys open the running service."""
    site, elsewhere, there = tmp_path / "site", tmp_path / "elsewhere", tmp_path / "there"
    for folder in (site, elsewhere, there):
        folder.mkdir()
    port, stomp_port = free_port(), free_port()
    (site / "facewatch.yaml").write_text(
        f"data_dir: state\nmodels: {{dir: {models_dir}}}\napi: {{port: {port}}}\nbroker: {{port: {stomp_port}}}\n"
        "runtime: {analysis_processes: 0}\nwatcher: {enabled: false}\ngrouping: {enabled: false}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEWATCH_")}
    base = f"http://127.0.0.1:{port}"

    def cli(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "facewatch", *args], env={**env, **extra},
                              capture_output=True, text=True, timeout=120, cwd=cwd)

    first = cli("tenants", "create", "first", "--config", str(site / "facewatch.yaml"), cwd=there)
    assert first.returncode == 0 and "created a new database" in first.stderr
    assert (site / "state" / "facewatch.db").is_file()
    proc = subprocess.Popen([sys.executable, "-m", "facewatch", "serve", "--config", str(site / "facewatch.yaml")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=there)
    try:
        eventually(lambda: Http(base).call("GET", "/api/v1/health").status == 200, timeout_s=90,
                   interval_s=0.2, ignoring=(OSError,), what="serve to answer")
        second = cli("tenants", "create", "second", cwd=elsewhere, FACEWATCH_CONFIG=str(site / "facewatch.yaml"))
        assert second.returncode == 0, second.stderr
        assert "created a new database" not in second.stderr  # the service's own
        key = json.loads(second.stdout)["api_key"]
        me = Http(base, {"x-api-key": key}).call("GET", "/api/v1/me")
        assert me.status == 200 and me.body["tenant"] == json.loads(second.stdout)["tenant_id"]
        checked = cli("config", "check", cwd=elsewhere, FACEWATCH_CONFIG=str(site / "facewatch.yaml"))
        assert f"data_dir {site / 'state'}" in checked.stdout
        # Without any config, a tool that needs the database says it found none instead of making one.
        lost = cli("keys", "list", "second", cwd=elsewhere)
        assert lost.returncode == 1 and "no database" in lost.stderr and not (elsewhere / "data").exists()
        wrong = cli("cameras", "list", "--api-key", "fwk_not.a-key", cwd=elsewhere,
                    FACEWATCH_CONFIG=str(site / "facewatch.yaml"))
        assert wrong.returncode == 1 and "API key" in wrong.stderr and "Traceback" not in wrong.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # The service gone: one line saying what could not be reached.
    down = cli("cameras", "list", "--api-key", key, cwd=elsewhere, FACEWATCH_CONFIG=str(site / "facewatch.yaml"))
    assert down.returncode == 1 and f"127.0.0.1:{stomp_port}" in down.stderr and "facewatch serve" in down.stderr
