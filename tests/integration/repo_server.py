"""A real `facewatch serve` subprocess on SQLite or PostgreSQL, and a small HTTP client.

Imports no pytest (nor conftest): bench/watcher.py uses it too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
# Servers started and not yet stopped: conftest stops them at the end of the session, so a fixture that
# fails between start() and its yield (its teardown never runs) leaves no `serve` behind.
RUNNING: set["RepoServer"] = set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    body: Any
    raw: bytes


@dataclass
class Http:
    base: str
    headers: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, body: Any = None, *, files: dict[str, tuple[str, bytes]] | None = None,
             fields: dict[str, str] | None = None, raw: bytes | None = None, headers: dict[str, str] | None = None,
             content_type: str = "application/json") -> Reply:
        hdrs = dict(self.headers) | (headers or {})
        data: bytes | None = None
        if files is not None or fields is not None:
            boundary = uuid.uuid4().hex
            chunks = []
            for name, value in (fields or {}).items():
                chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                              f"{value}\r\n".encode())
            for name, (filename, payload) in (files or {}).items():
                chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                              f'filename="{filename}"\r\n'
                              f"Content-Type: application/octet-stream\r\n\r\n".encode() + payload + b"\r\n")
            data = b"".join(chunks) + f"--{boundary}--\r\n".encode()
            hdrs["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif raw is not None:
            data = raw
            hdrs["Content-Type"] = content_type
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                payload = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            payload = err.read()
            status = err.code
            err.close()
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = None
        return Reply(status, parsed, payload)


class RepoServer:
    def __init__(self, data_dir: Path, models_dir: Path, storage_url: str | None, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.stomp_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FACEWATCH_")}
        self.env.update(FACEWATCH_DATA_DIR=str(data_dir), FACEWATCH_MODELS__DIR=str(models_dir),
                        FACEWATCH_API__PORT=str(self.port), FACEWATCH_BROKER__PORT=str(self.stomp_port),
                        FACEWATCH_AUTH__RATE_PER_S="0", **env)
        if storage_url:
            self.env["FACEWATCH_STORAGE__URL"] = storage_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "serve.log"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "facewatch", *args], env=self.env, capture_output=True,
                              text=True, timeout=120, cwd=ROOT)

    def create_tenant(self, name: str) -> dict[str, str]:
        made = self.cli("tenants", "create", name)
        assert made.returncode == 0, made.stderr
        tenant: dict[str, str] = json.loads(made.stdout)
        return tenant

    def start(self) -> "RepoServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "facewatch", "serve"], env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=ROOT)
        RUNNING.add(self)
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()[-3000:]}")
            return self._port_open() and Http(self.base).call("GET", "/api/v1/health").status == 200

        try:
            eventually(answers, timeout_s=90, interval_s=0.2, what="serve to answer /api/v1/health")
        except AssertionError as exc:
            raise RuntimeError(f"serve did not answer: {self.log.read_text()[-3000:]}") from exc
        return self

    def _port_open(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self, api_key: str | None = None, token: str | None = None) -> Http:
        headers = {}
        if api_key:
            headers["x-api-key"] = api_key
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return Http(self.base, headers)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None
        RUNNING.discard(self)

    def kill(self) -> None:
        """SIGKILL the server and its child processes (camera workers, analysis pool) at once: a node
        that dies, as its host would."""
        if self.proc is None:
            return
        family = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                family += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
        self.proc = None


def enrol(http: Http, shared_data: Path, gallery: str, people: Iterable[str]) -> list[str]:
    """Each person's photos of faces/enroll into ``gallery`` (made if missing); returns the new face ids."""
    if http.call("GET", f"/api/v1/galleries/{gallery}").status == 404:
        assert http.call("POST", "/api/v1/galleries", {"name": gallery}).status == 201
    face_ids = []
    for person in people:
        assert http.call("POST", f"/api/v1/galleries/{gallery}/subjects", {"id": person, "name": person}).status == 201
        for image in sorted((shared_data / "faces" / "enroll" / person).iterdir()):
            added = http.call("POST", f"/api/v1/galleries/{gallery}/subjects/{person}/faces",
                              files={"file": (image.name, image.read_bytes())})
            assert added.status == 201, (image, added.body)
            face_ids += [f["id"] for f in added.body["faces"]]
    return face_ids
