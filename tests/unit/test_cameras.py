"""Camera settings, source policy and declared cameras in config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.errors import BadParam
from facewatch.config import ConfigError, parse_config
from watcher.cameras import CameraSettings, SourcePolicy, parse_settings


def test_defaults_suit_a_door_camera() -> None:
    settings = parse_settings({"url": "rtsp://cam.local/stream"})
    assert settings.max_fps == 5 and settings.cooldown_s == 30 and settings.attach_crop
    assert settings.threshold is None and settings.rtsp_transport == "tcp"


@pytest.mark.parametrize(("data", "param"), [
    ({}, "url"),
    ({"url": "rtsp://x/y", "max_fps": 0}, "max_fps"),
    ({"url": "rtsp://x/y", "rtsp_transport": "sctp"}, "rtsp_transport"),
    ({"url": "rtsp://x/y", "attributes": ["mood"]}, "attributes"),
    ({"url": "rtsp://x/y", "galleries": ["bad/name"]}, "galleries"),
    ({"url": "rtsp://x/y", "threshold": 2}, "threshold"),
    ({"url": "rtsp://x/y", "zoom": 2}, "zoom"),
])
def test_bad_settings_name_the_field(data: dict[str, Any], param: str) -> None:
    with pytest.raises(BadParam) as caught:
        parse_settings(data)
    assert caught.value.param == param


def test_updates_merge_over_the_current_settings() -> None:
    base = parse_settings({"url": "rtsp://x/y", "name": "Door", "max_fps": 3})
    changed = parse_settings({"max_fps": 8}, base)
    assert (changed.name, changed.max_fps, changed.url) == ("Door", 8, "rtsp://x/y")


def test_network_sources_are_allowed_and_local_ones_are_opt_in(tmp_path: Path) -> None:
    closed = SourcePolicy()
    for url in ("rtsp://cam/1", "rtsps://cam/1", "http://cam/mjpeg", "https://cam/x.ts"):
        assert closed.stream_options(CameraSettings(url=url)).url == url
    for url, words in ((str(tmp_path / "v.mp4"), "file_roots"), (f"file://{tmp_path}/v.mp4", "file_roots"),
                       ("/dev/video0", "allow_devices"), ("relative.mp4", "absolute"), ("ftp://x/y", "unsupported"),
                       ("rtsp:///nohost", "host"), ("https://cam/live/index.M3U8?t=1", "allow_playlists"),
                       ("http://cam/x.mpd", "allow_playlists")):
        with pytest.raises(BadParam, match=words):
            closed.check(url)
    opened = SourcePolicy(file_roots=(str(tmp_path),), allow_devices=True, allow_playlists=True)
    assert opened.stream_options(CameraSettings(url="https://cam/x.m3u8")).allow_playlists
    options = opened.stream_options(CameraSettings(url=f"file://{tmp_path}/v.mp4", loop=True, max_fps=2))
    assert options.url == str(tmp_path / "v.mp4") and options.loop and options.max_fps == 2
    assert opened.stream_options(CameraSettings(url="/dev/video0")).input_format == "v4l2"
    with pytest.raises(BadParam, match="file_roots"):  # no escaping the root with ..
        opened.check(f"{tmp_path}/../elsewhere.mp4")


@pytest.mark.parametrize("url", ["http://[::1", "http://[zz]/x", "http://h:99999/x", "rtsp://h:-1/x",
                                 "/videos/clip\x00.mp4", "rtsp://cam\x00.local/x", "rtsp://cam/\x1b[2J"])
def test_a_url_that_does_not_parse_is_a_bad_param_not_a_crash(tmp_path: Path, url: str) -> None:
    # urlsplit and Path.resolve raise ValueError on these: the request was a 500.
    with pytest.raises(BadParam) as refused:
        SourcePolicy(file_roots=(str(tmp_path),)).check(url)
    assert refused.value.param == "url"


def test_declared_cameras_are_validated_like_the_rest_of_the_config() -> None:
    cfg = parse_config({"watcher": {"cameras": [{"id": "door", "tenant": "acme", "url": "rtsp://c/1",
                                                 "threshold": "strict"}]}}, environ={})
    (camera,) = cfg.watcher.cameras
    assert camera.id == "door" and camera.threshold == "strict" and camera.enabled
    with pytest.raises(ConfigError, match=r"watcher.cameras.0.max_fps"):
        parse_config({"watcher": {"cameras": [{"id": "door", "tenant": "a", "url": "rtsp://c/1", "max_fps": -1}]}},
                     environ={})
    with pytest.raises(ConfigError, match=r"watcher.cameras.0.id"):
        parse_config({"watcher": {"cameras": [{"id": "Door!", "tenant": "a", "url": "rtsp://c/1"}]}}, environ={})
