"""Zips for bulk jobs are checked before anything is decompressed."""

from __future__ import annotations

import io
import zipfile

import pytest

from api.errors import PayloadTooLarge
from repo.jobs import items_from_zip


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_member_that_expands_past_an_image_limit_is_refused_by_name() -> None:
    # 20 MB of zeros deflate to 20 KB: the total limit (2 GiB) let such a member be read whole into memory.
    bomb = _zip({"someone/fine.jpg": b"\xff\xd8" * 10, "someone/bomb.jpg": bytes(20 * 1024 * 1024)})
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge) as refused:
        items_from_zip(bomb, 100, 2 * 1024**3, max_item_bytes=10 * 1024 * 1024)
    assert "someone/bomb.jpg" in refused.value.reason
    assert [i.name for i in items_from_zip(bomb, 100, 2 * 1024**3)] == ["someone/bomb.jpg", "someone/fine.jpg"]


def test_members_up_to_the_limit_are_taken() -> None:
    data = _zip({"a/1.jpg": bytes(1000), "b/2.png": bytes(1000)})
    assert len(items_from_zip(data, 100, 10_000, max_item_bytes=1000)) == 2
