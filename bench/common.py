"""Shared bits of the benchmarks: config, data paths, percentiles, face choice."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facewatch.analyzer_setup import build_analyzer  # noqa: E402
from facewatch.config import FacewatchConfig, load_config, parse_config  # noqa: E402
from vision.analyzer import FaceAnalyzer  # noqa: E402
from vision.images import decode_image  # noqa: E402
from vision.records import Face  # noqa: E402

DATA = Path(os.environ.get("FWTEST_DATA_DIR", ROOT.parent / "shared" / "data"))


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="facewatch config (default: built-in defaults)")


def make_config(path: str | None, **overrides: object) -> FacewatchConfig:
    # Without a config file, use the repository's data folder wherever we run from.
    base = load_config(path) if path else parse_config({"data_dir": str(ROOT / "data")})
    data = base.model_dump()
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return parse_config(data, environ={})


def make_analyzer(cfg: FacewatchConfig) -> FaceAnalyzer:
    return build_analyzer(cfg)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q))


def probe_face(analyzer: FaceAnalyzer, image: np.ndarray) -> Face | None:
    """The face the API takes for a single-face operation (verify, enrol, a probe): the most
    prominent one (vision/selection.py), embedded. Benchmarks measure what users get."""
    faces = analyzer.analyze(image, max_faces=1)
    return faces[0] if faces and faces[0].embedding is not None else None


def embed_lfw(analyzer: FaceAnalyzer) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and person names of LFW View 1, each face as the API picks it (cached per model)."""
    cache = Path(tempfile.gettempdir()) / f"facewatch-lfw-prominent-{analyzer.embedder.model_id}.npz"
    if cache.exists():
        data = np.load(cache)
        return data["vectors"], data["labels"]
    vectors: list[np.ndarray] = []
    labels: list[str] = []
    paths = sorted((DATA / "pairs" / "lfw-view1" / "images").glob("*/*.jpg"))
    started = time.monotonic()
    for path in paths:
        face = probe_face(analyzer, decode_image(path.read_bytes()))
        if face is None or face.embedding is None:
            continue
        vectors.append(face.embedding)
        labels.append(path.parent.name)
    print(f"embedded {len(vectors)} of {len(paths)} images in {time.monotonic() - started:.0f}s")
    np.savez(cache, vectors=np.stack(vectors), labels=np.array(labels))
    return np.stack(vectors), np.array(labels)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real ``facewatch serve`` (SQLite, embedded broker) in a subprocess, with one tenant."""

    def __init__(self, data_dir: Path, models_dir: Path, log: Path | None = None, **env: str) -> None:
        self.port = free_port()
        self.stomp_port = free_port()
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FACEWATCH_")}
        self.env.update(FACEWATCH_DATA_DIR=str(data_dir), FACEWATCH_MODELS__DIR=str(models_dir),
                        FACEWATCH_API__PORT=str(self.port), FACEWATCH_BROKER__PORT=str(self.stomp_port),
                        FACEWATCH_AUTH__RATE_PER_S="0", FACEWATCH_LOG_LEVEL="warning")
        self.env.update(env)
        made = subprocess.run([sys.executable, "-m", "facewatch", "tenants", "create", "bench"], env=self.env,
                              capture_output=True, text=True, cwd=ROOT, check=True)
        self.key = json.loads(made.stdout)["api_key"]
        self.start()

    def start(self, **env: str) -> None:
        self.env.update(env)
        output = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "facewatch", "serve"], env=self.env, cwd=ROOT,
                                     stdout=output, stderr=output)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=10) as reply:
            return dict(json.loads(reply.read()))
