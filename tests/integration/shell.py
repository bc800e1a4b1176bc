"""A shell session the way a person types into a terminal, for tests that run documented commands.

``Terminal`` feeds a bash process commands on its standard input, one block at
a time, and keeps everything it prints; a test waits (on a condition, no
polling) for what a block should print before it types the next one.
"""

from __future__ import annotations

import codecs
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ("Terminal", "json_objects", "shim_dir")

T = TypeVar("T")


def json_objects(text: str) -> list[Any]:
    """Every JSON object printed in ``text``, in order, whatever stands between them (curl prints no
    final newline, so an answer and the next line may share a line)."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    at = text.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            at = text.find("{", at + 1)
            continue
        found.append(value)
        at = text.find("{", end)
    return found


def shim_dir(folder: Path, python: str) -> Path:
    """A folder standing in for a virtualenv's bin/: ``facewatch`` and ``python`` run ``python`` (the
    interpreter running the tests, so the tree under test), ``activate`` puts the folder on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, line in (("facewatch", f'exec "{python}" -m facewatch "$@"'), ("python", f'exec "{python}" "$@"')):
        path = folder / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(0o755)
    (folder / "activate").write_text(f'PATH="{folder}:$PATH"; export PATH\n')
    return folder


class Terminal:
    """bash reading commands from a pipe; stdout kept in ``output``, stderr in a file."""

    def __init__(self, cwd: Path, env: dict[str, str], stderr_file: Path) -> None:
        self._stderr = stderr_file.open("w")
        # Its own session: whatever it leaves running (a job sent to the background) can be ended with it.
        self.proc = subprocess.Popen(["bash"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     cwd=cwd, env=env, start_new_session=True)
        self.output = ""
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="terminal-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            with self._changed:
                self.output += decoder.decode(chunk)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def type(self, commands: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((commands if commands.endswith("\n") else commands + "\n").encode())
        self.proc.stdin.flush()

    def wait_for(self, what: str, found: Callable[[str], T | None], timeout_s: float) -> T:
        """The first truthy ``found(output)``, as soon as the output makes it so."""
        answer: T | None = None

        def check() -> bool:
            nonlocal answer
            answer = found(self.output)
            return bool(answer) or self.proc.poll() is not None

        with self._changed:
            self._changed.wait_for(check, timeout_s)
        if not answer:
            raise AssertionError(f"no {what} within {timeout_s:g}s; the terminal printed:\n{self.output[-4000:]}")
        return answer

    def exit(self, timeout_s: float) -> int:
        """Closes its input (end of the session) and waits for bash to exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout_s)
        return code

    def close(self) -> None:
        """Ends the session and anything it left running."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass
        self._stderr.close()
