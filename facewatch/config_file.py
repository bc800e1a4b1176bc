"""Which config file a command reads: the same one for `serve` and every other command.

Order: ``--config PATH``, else ``FACEWATCH_CONFIG``, else ``./config.yaml`` when
it exists, else none (the built-in defaults, paths relative to the current
directory). Relative paths inside a file are relative to that file's folder
(config.load_config), so a command run from another folder finds the same
data directory as the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ("ConfigLocation", "find_config", "CONFIG_ENV", "DEFAULT_CONFIG")

CONFIG_ENV = "FACEWATCH_CONFIG"
DEFAULT_CONFIG = "config.yaml"


@dataclass(slots=True, frozen=True)
class ConfigLocation:
    path: Path | None  # None: no file, the built-in defaults
    found_by: str  # "--config", "FACEWATCH_CONFIG", "./config.yaml" or "defaults"

    def describe(self) -> str:
        if self.path is None:
            return "no config file (built-in defaults; looked for --config, FACEWATCH_CONFIG, ./config.yaml)"
        return f"{self.path} (from {self.found_by})"


def find_config(explicit: str | None, environ: Mapping[str, str], cwd: Path) -> ConfigLocation:
    """The config file to read; a path given by option or variable need not exist (loading says so)."""
    if explicit:
        return ConfigLocation((cwd / explicit).absolute(), "--config")
    if environ.get(CONFIG_ENV):
        return ConfigLocation((cwd / environ[CONFIG_ENV]).absolute(), CONFIG_ENV)
    if (cwd / DEFAULT_CONFIG).is_file():
        return ConfigLocation((cwd / DEFAULT_CONFIG).absolute(), f"./{DEFAULT_CONFIG}")
    return ConfigLocation(None, "defaults")
