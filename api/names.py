"""What a name may be (galleries, subjects, a camera's galleries): one rule for every package."""

from __future__ import annotations

import re

__all__ = ("NAME", "CAMERA_ID")

NAME = re.compile(r"^[\w.\- ]{1,200}$")  # letters, digits, spaces, '.', '_' or '-'
CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # one topic word: /topic/watcher.<id>
