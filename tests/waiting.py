"""Waiting for facts, not time: the one polling helper of the test suite.

Prefer an event when there is one: a receipt (``BusClient.subscribe(...,
receipt=True)``, ``publish(..., receipt=True)``, a RECEIPT frame), a reply, a
message that comes after the ones that must not come, a Condition. Poll with
``eventually`` only for a state that announces nothing (a job row, a process,
a port, a counter).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ("eventually",)

T = TypeVar("T")


def eventually(predicate: Callable[[], T | None], *, timeout_s: float = 10.0, what: str = "the condition",
               interval_s: float = 0.02, ignoring: tuple[type[Exception], ...] = ()) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    ``ignoring``: exceptions that mean "not yet" (a server still starting).
    Fails with an AssertionError naming ``what`` (and the last answer or
    exception) after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    error: Exception | None
    while True:
        try:
            value = predicate()
        except ignoring as exc:  # not yet
            last, error = f"last error: {exc!r}", exc
        else:
            if value:
                return value
            last, error = f"last answer: {value!r}", None
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what} ({last})") from error
        # The one sleep of the polling: the state polled announces no change there is to wait on.
        time.sleep(interval_s)
