"""What a name may be (galleries, subjects, a camera's galleries): one rule for every package."""

from __future__ import annotations

import re

__all__ = ("NAME",)

NAME = re.compile(r"^[\w.\- ]{1,200}$")  # letters, digits, spaces, '.', '_' or '-'
