"""What a name may be (galleries, subjects, a camera's galleries): one rule for every package,
and the same rule as the OpenAPI document's pattern.

ASCII on purpose: a name is an identifier that travels in URLs, and JSON Schema's regular
expressions read ``\\w`` as ASCII where Python's read it as Unicode; display names are ``LABEL``s.
"""

from __future__ import annotations

import re

__all__ = ("NAME", "NAME_PATTERN", "LABEL", "LABEL_PATTERN", "CAMERA_ID")

# Letters, digits, spaces, '.', '_' or '-', not only dots: "." and ".." are path segments clients rewrite.
NAME_PATTERN = r"^(?!\.+$)[A-Za-z0-9_. -]{1,200}$"
NAME = re.compile(r"(?!\.+\Z)[A-Za-z0-9_. -]{1,200}\Z")  # .match: anchored at both ends ("$" allows a final "\n")
LABEL_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"  # any text of 1-200 characters but control characters
LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,200}\Z")
CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # one topic word: /topic/watcher.<id>
