"""Shared fixtures: where the real faces and the model pack are.

On a user's machine without ../shared/data or without the model pack, tests
that need them skip with the reason. CI sets FWTEST_REQUIRE_DATA=1 and
FWTEST_REQUIRE_MODELS=1, which turn those skips into failures.
(Not FACEWATCH_*: that prefix belongs to the config overrides.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from facewatch.config import FacewatchConfig
    from vision.analyzer import FaceAnalyzer

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FWTEST_DATA_DIR", ROOT.parent / "shared" / "data"))
MODELS_DIR = Path(
    os.environ.get("FWTEST_MODELS_DIR", ROOT / "data" / "models" / "faceplugin-face-recognition-js-0.0.1")
)


def _require(variable: str, reason: str) -> None:
    if os.environ.get(variable) == "1":
        pytest.fail(f"{reason} ({variable}=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "faces" / "enroll").is_dir():
        _require("FWTEST_REQUIRE_DATA", f"real face data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not (MODELS_DIR / "fr_feature.onnx").is_file():
        _require("FWTEST_REQUIRE_MODELS", f"model pack not found at {MODELS_DIR}: run 'facewatch models fetch'")
    return MODELS_DIR


@pytest.fixture(scope="session")
def config(models_dir: Path) -> FacewatchConfig:
    from facewatch.config import parse_config

    return parse_config({"models": {"dir": str(models_dir)}}, environ={})


@pytest.fixture(scope="session")
def analyzer(config: FacewatchConfig) -> FaceAnalyzer:
    from facewatch.analyzer_setup import build_analyzer

    return build_analyzer(config)


@pytest.fixture(scope="session")
def load_image(shared_data: Path) -> Callable[[str], np.ndarray]:
    from vision.images import decode_image

    def load(relative: str) -> np.ndarray:
        return decode_image((shared_data / relative).read_bytes())

    return load


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("FACEWATCH_"):
            monkeypatch.delenv(name)
    yield
