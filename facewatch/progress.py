"""A progress bar for work a person waits on (model download, enrolment), on stderr.

On a terminal it redraws one line; elsewhere (a log, a pipe) it writes a line
at each tenth of the way, so a log shows progress without a flood.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ("ProgressBar", "human_bytes")

_WIDTH = 30


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


class ProgressBar:
    def __init__(self, label: str, total: float | None = None, *, unit: str = "", stream: TextIO | None = None,
                 tty: bool | None = None) -> None:
        """``total`` None: unknown (a count without a bar); ``unit`` "bytes" shows sizes."""
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.done: float = 0
        self.started = time.monotonic()
        self._last_tenth = -1
        self._last_draw = 0.0
        self._closed = False

    def _amount(self, value: float) -> str:
        return human_bytes(value) if self.unit == "bytes" else f"{value:.0f}"

    def _line(self) -> str:
        elapsed = time.monotonic() - self.started
        if self.total:
            share = min(1.0, self.done / self.total)
            filled = int(share * _WIDTH)
            bar = "#" * filled + "-" * (_WIDTH - filled)
            return (f"{self.label} [{bar}] {share * 100:3.0f}% {self._amount(self.done)}/{self._amount(self.total)}"
                    f" {elapsed:.0f}s")
        return f"{self.label} {self._amount(self.done)} {elapsed:.0f}s"

    def update(self, done: float, total: float | None = None) -> None:
        """Progress so far (absolute, not an increment); ``total`` may become known late."""
        self.done = done
        if total is not None:
            self.total = total
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= 0.1 or (self.total and done >= self.total):
                self._last_draw = now
                self.stream.write("\r\x1b[K" + self._line())
                self.stream.flush()
            return
        tenth = int(10 * done / self.total) if self.total else -1
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def close(self, message: str = "") -> None:
        """Ends the bar's line; ``message`` (e.g. "done") follows it."""
        if self._closed:
            return
        self._closed = True
        if self.tty:
            self.stream.write("\r\x1b[K" + self._line() + (f" {message}" if message else "") + "\n")
        elif message:
            self.stream.write(f"{self.label}: {message}\n")
        self.stream.flush()
