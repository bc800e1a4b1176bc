"""Destination names and RabbitMQ-style topic patterns.

``/topic/<routing.key>`` fans out; a subscription's key may use ``*`` (exactly
one word) and ``#`` (zero or more words). ``/queue/<name>`` is a shared queue,
``/temp-queue/<name>`` a private reply queue of one connection, and
``/reply-queue/<token>`` the address the broker substitutes for it in
``reply-to`` (as RabbitMQ does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .frames import ProtocolError

__all__ = ("Destination", "parse_destination", "topic_matches", "KINDS")

KINDS = ("topic", "queue", "temp-queue", "reply-queue")
_NAME = re.compile(r"^[A-Za-z0-9_.:*#\-]{1,255}$")


@dataclass(slots=True, frozen=True)
class Destination:
    kind: str  # one of KINDS
    name: str  # routing key, queue name or token

    @property
    def text(self) -> str:
        return f"/{self.kind}/{self.name}"


def parse_destination(text: str | None, *, pattern_allowed: bool = False) -> Destination:
    if not text:
        raise ProtocolError("missing destination header")
    for kind in KINDS:
        prefix = f"/{kind}/"
        if text.startswith(prefix):
            name = text[len(prefix) :]
            if not _NAME.match(name):
                raise ProtocolError("invalid destination", f"{text[:300]!r}: names are 1-255 of A-Z a-z 0-9 _ . : -")
            if ("*" in name or "#" in name) and not (pattern_allowed and kind == "topic"):
                raise ProtocolError("invalid destination", f"{text!r}: wildcards only in topic subscriptions")
            return Destination(kind, name)
    raise ProtocolError("unknown destination type", f"{text[:300]!r}: use /topic/, /queue/ or /temp-queue/")


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic-exchange matching of a routing ``key`` against ``pattern``.

    Dynamic programming over words: ``reach[j]`` says whether the pattern read
    so far can consume exactly the first ``j`` words of the key.
    """
    if "*" not in pattern and "#" not in pattern:
        return pattern == key
    words = key.split(".")
    reach = [True] + [False] * len(words)
    for token in pattern.split("."):
        if token == "#":
            for j in range(1, len(words) + 1):
                reach[j] = reach[j] or reach[j - 1]
        else:
            reach = [False] + [
                reach[j - 1] and (token == "*" or token == words[j - 1]) for j in range(1, len(words) + 1)
            ]
    return reach[-1]
