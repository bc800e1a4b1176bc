from __future__ import annotations

import pytest

from broker.destinations import parse_destination, topic_matches
from broker.frames import ProtocolError


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.b", "a.b", True), ("a.b", "a.c", False), ("a.*", "a.b", True), ("a.*", "a.b.c", False),
        ("a.*", "a", False), ("a.#", "a", True), ("a.#", "a.b.c", True), ("#", "anything.at.all", True),
        ("#.c", "c", True), ("#.c", "a.b.c", True), ("#.c", "a.b", False), ("a.#.c", "a.c", True),
        ("a.#.c", "a.x.y.c", True), ("*.b", "b", False), ("*.*", "a.b", True), ("a.*.#", "a", False),
        ("a.*.#", "a.b", True), ("watcher.*", "watcher.cam-1", True), ("watcher.*", "watcher", False),
    ],
)
def test_topic_matching_like_rabbitmq(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_parse_destination() -> None:
    assert parse_destination("/topic/watcher.cam1").kind == "topic"
    assert parse_destination("/queue/facewatch.api").name == "facewatch.api"
    assert parse_destination("/topic/watcher.*", pattern_allowed=True).name == "watcher.*"
    for bad in (None, "", "/bogus/x", "/queue/", "/queue/a b", "/queue/a*", "/topic/a.*"):
        with pytest.raises(ProtocolError):
            parse_destination(bad)
