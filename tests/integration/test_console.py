"""The web console in a real browser (Debian's Chromium, driven by playwright-core) against a real
`facewatch serve`: each page used as a person would, through the public REST and STOMP APIs only.

tests/browser/console.mjs does the clicking and typing (one scenario per test) and says what it saw as
JSON; each test then checks the effect through the API. The live event comes from a real camera: the
shared clip served by GStreamer's RTSP server. Screenshots of every page (and of each flow) are kept in
$FWTEST_SHOTS_DIR when it is set, else in a temporary folder the run names at its end;
scripts/docs_images.py makes docs/images/ from them.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import eventually

from .conftest import require_rtsp
from .repo_server import ROOT, Http, RepoServer, enrol, free_port
from .rtsp import RtspServer
from .test_browser_stomp import BROWSER_DIR, _require_browser

CLIP = "short_hamilton_clip.mp4"
# What a deliberately refused credential makes Chromium log (a failed load is a console error): only
# the scenarios that provoke one may show it.
REFUSED = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"


@dataclass
class Console:
    server: RepoServer
    tenant: dict[str, str]
    http: Http
    shared_data: Path
    shots: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "facewatch", *args],
                              env={**self.server.env, "FACEWATCH_API_KEY": self.tenant["api_key"]},
                              capture_output=True, text=True, timeout=120, cwd=ROOT)

    def camera(self, camera_id: str) -> dict[str, Any]:
        """The camera as the API has it (over STOMP, as `facewatch cameras show` asks)."""
        shown = self.cli("cameras", "show", camera_id)
        assert shown.returncode == 0, shown.stderr
        camera: dict[str, Any] = json.loads(shown.stdout)
        return camera

    def group_image(self, photo: Path) -> dict[str, Any]:
        """The one face of ``photo`` placed by grouping: {group, face, new_group, ...}."""
        grouped = self.http.call("POST", "/api/v1/groups/images", files={"file": (photo.name, photo.read_bytes())})
        assert grouped.status == 200, grouped.body
        assert len(grouped.body["faces"]) == 1
        face: dict[str, Any] = grouped.body["faces"][0]
        return face

    def browse(self, scenario: str, *, allowed_errors: tuple[str, ...] = (), **options: Any) -> dict[str, Any]:
        """Runs one scenario of console.mjs; its findings, once it passed with no unexpected console error."""
        opts = {"base": self.server.base, "apiKey": self.tenant["api_key"], "shots": str(self.shots), **options}
        done = subprocess.run(["node", str(BROWSER_DIR / "console.mjs"), scenario, json.dumps(opts)],
                              capture_output=True, text=True, timeout=240, cwd=BROWSER_DIR)
        assert done.returncode == 0, done.stderr[-3000:]
        found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        assert found["ok"], found["error"]
        unexpected = [e for e in found["consoleErrors"] if not any(a in e for a in allowed_errors)]
        assert unexpected == []
        assert found["outside"] == []  # nothing fetched from anywhere but the server
        return found


@pytest.fixture(scope="module")
def console(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
            shared_data: Path) -> Iterator[Console]:
    _require_browser()
    if not (ROOT / "console" / "static" / "vendor" / "swagger-ui-bundle.js").is_file():
        pytest.fail("the console's vendored files are missing: run scripts/setup.sh")
    server = RepoServer(tmp_path_factory.mktemp("console"), models_dir, None,
                        FACEWATCH_WATCHER__FILE_ROOTS=json.dumps([str(shared_data / "video")]),
                        FACEWATCH_RUNTIME__ANALYSIS_PROCESSES="0",
                        # The test's RTSP server is on loopback, which cameras may not reach by default.
                        FACEWATCH_WATCHER__BLOCKED_NETWORKS=json.dumps(["169.254.0.0/16"]))
    tenant = server.create_tenant("console")
    other = server.create_tenant("neighbour")
    server.start()
    http = server.http(tenant["api_key"])
    enrol(http, shared_data, "hamilton", ["lin_manuel_miranda"])
    # Another tenant's gallery, which the console must never show.
    assert server.http(other["api_key"]).call("POST", "/api/v1/galleries", {"name": "neighbours-only"}).status == 201
    shots = Path(os.environ.get("FWTEST_SHOTS_DIR") or tmp_path_factory.mktemp("shots"))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:  # where the screenshots go, said even when output is captured
        with capture.global_and_fixture_disabled():
            print(f"\nconsole screenshots: {shots}")
    yield Console(server, tenant, http, shared_data, shots)
    server.stop()


@pytest.fixture(scope="module")
def rtsp(shared_data: Path) -> Iterator[RtspServer]:
    require_rtsp()
    server = RtspServer(free_port(), str(shared_data / "video" / CLIP)).start()
    yield server
    server.kill()


def test_sign_in_with_an_api_key_and_out(console: Console) -> None:
    found = console.browse("signin-key", allowed_errors=(REFUSED,))
    assert found["refused"] == "Not signed in: that credential was refused"
    assert found["who"].startswith("tenant ") and "API key" in found["who"]
    assert found["afterReload"].endswith("/live")  # the session outlives a reload of the tab
    assert found["stored"] == 0  # signed out: nothing kept


def test_sign_in_with_client_credentials_renews_the_token_and_shows_only_the_tenant(console: Console) -> None:
    # The expired access token the scenario plants is refused once (the 401 it logs), then renewed.
    found = console.browse("signin-client", allowed_errors=(REFUSED,), clientId=console.tenant["client_id"],
                           clientSecret=console.tenant["client_secret"])
    assert found["kind"] == "token" and console.tenant["client_id"] in found["who"]
    assert found["refreshed"]
    assert "hamilton" in found["galleries"] and "neighbours-only" not in found["galleries"]
    assert "could not be read" not in found["cameras"]  # STOMP with the bearer token too


def test_a_live_event_from_an_rtsp_camera_arrives_with_its_crop_and_the_camera_status(
        console: Console, rtsp: RtspServer) -> None:
    added = console.cli("cameras", "add", "stage", rtsp.url, "--gallery", "hamilton", "--set", "cooldown_s=1",
                        "--set", "max_fps=3")
    assert added.returncode == 0, added.stderr
    try:
        found = console.browse("live", eventTimeoutMs=120000)
        camera = console.camera("stage")
    finally:
        assert console.cli("cameras", "remove", "stage").returncode == 0
    assert found["text"].startswith("lin_manuel_miranda")  # the name enrol() gave the subject
    assert "similarity" in found["text"] and "runner-up" in found["text"]
    assert found["cropIsJpeg"]
    assert "state" in found["card"] and "dropped" in found["card"] and "last error" in found["card"]
    assert camera["url"] == rtsp.url and camera["status"]["state"] in found["card"]
    # The event shown is the one the server kept: its sighting, by the id the page shows it under.
    def sighting() -> dict[str, Any] | None:
        listed = console.http.call("GET", "/api/v1/sightings?camera=stage&limit=200").body["sightings"]
        return next((s for s in listed if s["event_id"] == found["eventId"]), None)
    kept = eventually(sighting, timeout_s=30, what=f"the sighting of event {found['eventId']}")
    assert kept["decision"] == "recognized" and kept["subject"]["id"] == "lin_manuel_miranda"
    assert found["noted"].startswith("Noted: not lin_manuel_miranda")
    negatives = console.http.call("GET", "/api/v1/galleries/hamilton/subjects/lin_manuel_miranda/negatives").body
    assert len(negatives["negatives"]) == 1


def test_cameras_are_registered_stopped_and_deleted_over_the_ui(console: Console) -> None:
    clip = (console.shared_data / "video" / CLIP).as_uri()
    found = console.browse("cameras", cameraId="door", cameraUrl=clip, gallery="hamilton")
    assert "lower-case letters" in found["idError"]  # checked as the API checks it, before it is sent
    assert found["fpsError"].startswith("max_fps")
    assert "stopped" in found["stopped"]
    assert found["frameSize"] == [640, 360]  # a recent frame of the running camera (the clip is 640x360)
    listed = console.cli("cameras", "list")
    assert listed.returncode == 0 and "door" not in listed.stdout  # deleted for real, over the STOMP API


def test_a_camera_is_edited_through_its_form(console: Console) -> None:
    clip = (console.shared_data / "video" / CLIP).as_uri()
    added = console.cli("cameras", "add", "porch", clip, "--disabled", "--set", "max_fps=5")
    assert added.returncode == 0, added.stderr
    try:
        found = console.browse("camera-edit", cameraId="porch", name="Front porch", gallery="hamilton")
        camera = console.camera("porch")
    finally:
        assert console.cli("cameras", "remove", "porch").returncode == 0
    assert found["idDisabled"]  # an id is for life: it names the camera's topic
    assert found["heading"] == "Front porch (porch)" and "galleries: hamilton" in found["line"]
    assert (camera["name"], camera["max_fps"], camera["galleries"], camera["threshold"], camera["cooldown_s"],
            camera["attributes"]) == ("Front porch", 1.5, ["hamilton"], "strict", 12, ["age"])
    assert camera["url"] == clip and not camera["enabled"]  # what the form did not touch is as it was


def test_faces_uploaded_several_at_once_show_their_thumbnails(console: Console) -> None:
    enroll = console.shared_data / "faces" / "enroll"
    files = [str(photo) for photo in sorted((enroll / "kit_harington").iterdir())]  # two photos of him
    found = console.browse("faces", gallery="got", subject="Kit Harington", files=files)
    assert found["thumbnails"] == 2 and all(found["loaded"])
    assert found["progress"] == [1, 1]
    subjects = console.http.call("GET", "/api/v1/galleries/got/subjects").body["subjects"]
    assert [(s["name"], s["faces"]) for s in subjects] == [("Kit Harington", 2)]


@pytest.fixture(scope="module")
def people(console: Console) -> str:
    """A gallery with Obama twice over: subject "barack" (one photo) and subject "obama" (the other)."""
    enroll = console.shared_data / "faces" / "enroll" / "obama"
    assert console.http.call("POST", "/api/v1/galleries", {"name": "people"}).status == 201
    for subject, name, photo in (("barack", "Barack", "obama.jpg"), ("obama", "Obama", "obama2.jpg")):
        made = console.http.call("POST", "/api/v1/galleries/people/subjects", {"id": subject, "name": name})
        assert made.status == 201, made.body
        added = console.http.call("POST", f"/api/v1/galleries/people/subjects/{subject}/faces",
                                  files={"file": (photo, (enroll / photo).read_bytes())})
        assert added.status == 201, added.body
    return "people"


def _subjects(console: Console, gallery: str) -> list[tuple[str, str, int]]:
    listed = console.http.call("GET", f"/api/v1/galleries/{gallery}/subjects").body["subjects"]
    return sorted((s["id"], s["name"], s["faces"]) for s in listed)


def test_a_subject_is_renamed_through_its_form(console: Console, people: str) -> None:
    found = console.browse("subject-rename", gallery=people, subject="barack", to="Barack H. Obama")
    assert found["before"].startswith("Barack ") and found["after"].startswith("Barack H. Obama")
    assert _subjects(console, people) == [("barack", "Barack H. Obama", 1), ("obama", "Obama", 1)]


def test_a_subject_renamed_onto_another_name_is_merged_into_it(console: Console, people: str) -> None:
    if _subjects(console, people)[0][1] == "Barack":  # run alone: the rename above did not happen
        assert console.http.call("PATCH", f"/api/v1/galleries/{people}/subjects/barack",
                                 {"name": "Barack H. Obama"}).status == 200
    found = console.browse("subject-rename", gallery=people, subject="barack", to="Obama", merge=True)
    assert found["merged"].startswith("Merged into Obama")
    assert "subject=obama" in found["url"] and found["faces"] == 2  # the page follows the subject merged into
    assert _subjects(console, people) == [("obama", "Obama", 2)]


def test_the_test_page_draws_the_faces_it_found(console: Console) -> None:
    found = console.browse("test", photo=str(console.shared_data / "faces" / "probe" / "kit_with_rose.jpg"))
    assert found["found"] == "2 faces found."
    assert found["boxesDrawn"]
    assert len(found["identified"]) == 2


def test_the_test_page_verifies_against_a_photo_and_a_subject(console: Console) -> None:
    faces = console.shared_data / "faces"
    photo, second = faces / "probe" / "obama1.jpg", faces / "enroll" / "obama" / "obama.jpg"
    found = console.browse("verify", photo=str(photo), second=str(second), gallery="hamilton",
                           subject="lin_manuel_miranda")
    image = (photo.name, photo.read_bytes())
    same = console.http.call("POST", "/api/v1/verify",
                             files={"file": image, "image2": (second.name, second.read_bytes())})
    other = console.http.call("POST", "/api/v1/verify", files={"file": image},
                              fields={"gallery": "hamilton", "subject": "lin_manuel_miranda"})
    assert same.status == 200 and other.status == 200, (same.body, other.body)
    assert same.body["verified"] and not other.body["verified"]
    assert found["photos"] == (f"Verified: similarity {same.body['similarity']:.3f} "
                               f"against threshold {same.body['threshold']:.3f}")
    assert found["subject"] == (f"Not verified: similarity {other.body['similarity']:.3f} "
                                f"against threshold {other.body['threshold']:.3f}")
    assert found["drawn"] == [f"Face 1: not the same {other.body['similarity']:.2f}"]


def test_an_unknown_group_is_promoted_to_a_subject(console: Console) -> None:
    photo = console.shared_data / "faces" / "probe" / "obama1.jpg"
    grouped = console.http.call("POST", "/api/v1/groups/images", files={"file": (photo.name, photo.read_bytes())})
    assert grouped.status == 200, grouped.body
    group = grouped.body["faces"][0]["group"]
    found = console.browse("unknown", group=group, gallery="hamilton", name="Barack Obama", thisIs="Obama (crop)")
    assert found["promoted"].startswith("promoted")
    assert found["added"].startswith("Added as a face of Obama (crop)")
    subjects = console.http.call("GET", "/api/v1/galleries/hamilton/subjects").body["subjects"]
    faces = {s["name"]: s["faces"] for s in subjects}
    assert faces["Barack Obama"] >= 1 and faces["Obama (crop)"] == 1


def test_unknown_groups_are_merged_a_face_moved_and_a_group_ignored(console: Console) -> None:
    enroll = console.shared_data / "faces" / "enroll"
    rose, kit, alex = (console.group_image(enroll / person / image) for person, image in
                       (("rose_leslie", "img1.jpg"), ("kit_harington", "john1.jpeg"), ("alex_lacamoire", "img1.jpg")))
    assert len({rose["group"], kit["group"], alex["group"]}) == 3
    found = console.browse("groups", into=kit["group"], other=rose["group"], face=rose["face"], target=alex["group"])
    assert found["merged"].startswith("1 group merged")

    def group(group_id: str) -> dict[str, Any]:
        got = console.http.call("GET", f"/api/v1/groups/{group_id}")
        assert got.status == 200, got.body
        return dict(got.body)
    assert console.http.call("GET", f"/api/v1/groups/{rose['group']}").status == 404  # merged away
    assert [f["id"] for f in group(kit["group"])["faces"]] == [kit["face"]]  # its merged-in face moved on
    ignored = group(alex["group"])
    assert ignored["status"] == "ignored" and "ignored" in found["ignored"]
    assert sorted(f["id"] for f in ignored["faces"]) == sorted([alex["face"], rose["face"]])


def test_a_zip_is_enrolled_with_its_progress_from_the_jobs_topic(console: Console, tmp_path: Path) -> None:
    enroll = console.shared_data / "faces" / "enroll"
    archive = tmp_path / "people.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for person in ("biden", "alex_lacamoire"):
            for image in sorted((enroll / person).iterdir()):
                zf.write(image, f"{person}/{image.name}")
    assert console.http.call("POST", "/api/v1/galleries", {"name": "zipped"}).status == 201
    found = console.browse("enrol-zip", gallery="zipped", zip=str(archive))
    total = sum(len(list((enroll / p).iterdir())) for p in ("biden", "alex_lacamoire"))
    assert f"done, {total} of {total} images" in found["line"]
    assert found["bar"] == [total, total]
    subjects = console.http.call("GET", "/api/v1/galleries/zipped/subjects").body["subjects"]
    assert sorted(s["id"] for s in subjects) == ["alex_lacamoire", "biden"]


def test_history_lists_and_searches_sightings_where_the_server_has_them(console: Console) -> None:
    """The sightings API is not in this server: the browser answers its routes with that API's shapes."""
    faces = console.shared_data / "faces" / "probe"
    found = console.browse("history", crop=str(faces / "obama_small.jpg"), photo=str(faces / "obama1.jpg"))
    assert [t.split(" ")[0] for t in found["listed"]] == ["Lin-Manuel", "unknown"]
    assert any(a.startswith("GET /api/v1/sightings?") and "camera=stage" in a for a in found["asked"])
    assert found["searched"] == ["Lin-Manuel Miranda recognized"]
    assert "POST /api/v1/sightings/search" in found["asked"]


def test_the_api_reference_renders_the_openapi_document_and_the_stomp_topics(console: Console) -> None:
    found = console.browse("reference")
    assert found["operations"] > 30
    assert found["title"].startswith("facewatch")
    me = console.http.call("GET", "/api/v1/me").body
    assert me["topics"]["cameras"] in found["topics"]


def test_every_page_without_console_errors_by_keyboard_and_on_a_phone(console: Console) -> None:
    found = console.browse("pages")
    assert set(found["seen"]) == {"/live", "/cameras", "/faces", "/test", "/unknown", "/history", "/reference",
                                  "/reference/stomp"}
    # This server keeps sightings: the page lists them (how many depends on the tests before) and offers search.
    assert "Not available on this server" not in found["history"]
    assert re.search(r"\d+ sightings", found["history"]) and "Search by face" in found["history"]
    assert found["firstFocus"] == "Skip to content" and found["outline"] != "none"
    assert found["overflow"] <= 0  # nothing wider than a phone's screen
    assert (console.shots / "phone-faces.png").is_file()


def test_the_console_can_be_switched_off(tmp_path: Path, models_dir: Path) -> None:
    server = RepoServer(tmp_path, models_dir, None, FACEWATCH_CONSOLE__ENABLED="false",
                        FACEWATCH_RUNTIME__ANALYSIS_PROCESSES="0", FACEWATCH_WATCHER__ENABLED="false")
    server.start()
    try:
        eventually(lambda: Http(server.base).call("GET", "/api/v1/health").status == 200, what="health")
        assert Http(server.base).call("GET", "/").status == 404
        assert Http(server.base).call("GET", "/assets/js/main.js").status == 404
    finally:
        server.stop()
