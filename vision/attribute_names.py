"""The per-face attributes there are, by name: the one list config, API and cameras check against.

A module of its own so that validating a name does not import the models
(``attributes.py``: onnxruntime, OpenCV); each model's ``name`` is one of these.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ("AttributeName", "ATTRIBUTE_NAMES")

AttributeName = Literal["age", "gender", "pose", "liveness", "expression", "eyes"]
ATTRIBUTE_NAMES: tuple[AttributeName, ...] = get_args(AttributeName)
