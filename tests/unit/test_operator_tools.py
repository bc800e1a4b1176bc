"""The operator's small tools: progress bar, JSON log lines, routes on the other transport, enrolment batches."""

from __future__ import annotations

import io
import json
import logging
import zipfile

import pytest

from api.errors import NotFound
from api.request import ApiRequest, ApiResponse
from api.routing import STOMP_ONLY, Router
from facewatch.cli_client import enrol_batches
from facewatch.logs import JsonFormatter
from facewatch.progress import ProgressBar
from facewatch.summary import without_password


def test_progress_bar_in_a_log_writes_a_line_per_tenth() -> None:
    out = io.StringIO()
    bar = ProgressBar("enrolling", 100, stream=out, tty=False)
    for done in range(101):
        bar.update(done)
    bar.close("done")
    lines = out.getvalue().splitlines()
    assert len(lines) == 12  # 0 %, 10 % ... 100 %, and the closing word
    assert "100%" in lines[-2] and lines[-1] == "enrolling: done"


def test_progress_bar_on_a_terminal_redraws_one_line() -> None:
    out = io.StringIO()
    bar = ProgressBar("downloading", unit="bytes", stream=out, tty=True)
    bar.update(0, 2_000_000)
    bar.update(2_000_000)
    bar.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and "2.0 MB/2.0 MB" in text


def test_json_log_lines_are_one_object_each() -> None:
    record = logging.LogRecord("facewatch", logging.INFO, __file__, 1, "ready on %s", ("x",), None)
    record.camera = "door"
    line = JsonFormatter("watcher[door]").format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "ready on x" and data["level"] == "info" and data["camera"] == "door"
    assert data["process"] == "watcher[door]"


async def _handler(request: ApiRequest) -> ApiResponse:
    return ApiResponse(200)


def test_a_stomp_only_route_asked_over_rest_says_where_it_lives() -> None:
    router = Router()
    router.add("GET", "/api/v1/cameras", _handler, transports=STOMP_ONLY)
    with pytest.raises(NotFound) as info:
        router.match("POST", "/api/v1/cameras", "rest")
    assert "/queue/facewatch.api" in info.value.reason and "facewatch cameras" in info.value.reason
    with pytest.raises(NotFound, match="no such route"):
        router.match("GET", "/api/v1/nothing", "rest")


def test_enrolment_batches_stay_under_the_request_limit() -> None:
    items = [(f"person{i}/{j}.jpg", bytes(1000)) for i in range(5) for j in range(4)]
    batches = list(enrol_batches(iter(items), 5000))
    assert sum(count for _, count in batches) == 20 and len(batches) > 1
    names = []
    for data, count in batches:
        assert len(data) <= 5000 + 200  # the end of central directory record
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert len(archive.namelist()) == count
            names += archive.namelist()
    assert names == [name for name, _ in items]


def test_passwords_stay_out_of_the_start_line() -> None:
    assert without_password("postgresql://fw:secret@db:5432/fw") == "postgresql://fw:***@db:5432/fw"
    assert without_password("sqlite:////var/fw.db") == "sqlite:////var/fw.db"
