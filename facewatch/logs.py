"""Log output: plain text lines, or one JSON object a line (config ``log_format: json``).

Used by every facewatch process (the server, the CLI, the camera workers, which get
``configure_logging`` bound to the config as a factory).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Literal, TextIO

__all__ = ("JsonFormatter", "configure_logging", "LogFormat", "TEXT_FORMAT")

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# LogRecord's own attributes: whatever else a record carries came from ``extra=`` and goes into the object.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", "process", ...extra fields, "exception"?} on one line."""

    def __init__(self, process_name: str = "") -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage(), "pid": record.process,
        }
        if self.process_name:
            line["process"] = self.process_name
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def configure_logging(level: str, fmt: LogFormat = "text", process_name: str = "",
                      stream: TextIO | None = None) -> None:
    """The root logger writes ``level`` and above to ``stream`` (stderr) as ``fmt`` says; replaces earlier setup."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process_name))
    else:
        prefix = f"{process_name} " if process_name else ""
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.replace("%(name)s", prefix + "%(name)s")))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
