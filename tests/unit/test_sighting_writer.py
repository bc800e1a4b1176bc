"""The writer's retry rule: it waits out a database that is away, never a batch that cannot be stored."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from sqlalchemy.exc import DataError, OperationalError, ProgrammingError, StatementError

from broker.client import BusMessage
from broker.core import TENANT_HEADER
from repo.store import open_store
from sightings.records import SightingFilter
from sightings.store import SightingStore, Stored
from sightings.writer import CameraOwners, Delivery, PendingGroups, SightingWriter, WriterOptions
from tests.event_factory import recognized


class _ScriptedWriter(SightingWriter):
    """``write`` fails as scripted: ``outages`` whole-database failures first, then a DataError for
    every batch that holds a poisoned body."""

    def __init__(self, outages: int) -> None:
        super().__init__(store=cast(SightingStore, None), owners=cast(CameraOwners, None),
                         on_stored=lambda stored: None, pending=PendingGroups(),
                         options=WriterOptions(retry_initial_s=0.0, retry_max_s=0.0))
        self.outages = outages
        self.written: list[bytes] = []

    def write(self, deliveries: Sequence[Delivery]) -> list[Stored]:
        bodies = [d.body for d in deliveries]
        if self.outages:
            self.outages -= 1
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        if b"poison" in bodies:
            raise DataError("INSERT", {}, Exception("value out of range"))
        if b"bug" in bodies:
            raise ProgrammingError("INSERT", {}, Exception("no such column"))
        if b"unbindable" in bodies:
            raise StatementError("a parameter cannot be bound", "INSERT", {}, TypeError("not a number"))
        self.written.extend(bodies)
        return []


def _messages(*bodies: bytes) -> list[BusMessage]:
    return [BusMessage(destination="/queue/q", headers={}, body=b, subscription="s", ack_id=str(i))
            for i, b in enumerate(bodies)]


def test_a_database_outage_is_waited_out_and_the_whole_batch_stored() -> None:
    writer = _ScriptedWriter(outages=3)
    asyncio.run(writer.write_until_stored(_messages(b"a", b"b")))
    assert writer.written == [b"a", b"b"] and writer.stats.retries == 3 and writer.stats.dropped == 0


def test_a_row_the_database_refuses_is_dropped_alone_and_the_rest_stored() -> None:
    writer = _ScriptedWriter(outages=0)
    asyncio.run(writer.write_until_stored(_messages(b"a", b"poison", b"c")))
    assert writer.written == [b"a", b"c"] and writer.stats.dropped == 1 and writer.stats.retries == 0


def test_a_programming_error_or_an_unbindable_row_is_dropped_not_retried_for_ever() -> None:
    writer = _ScriptedWriter(outages=0)
    asyncio.run(writer.write_until_stored(_messages(b"a", b"bug", b"unbindable", b"d")))
    assert writer.written == [b"a", b"d"] and writer.stats.dropped == 2 and writer.stats.retries == 0


def test_a_sighting_is_the_tenant_its_worker_marked_not_the_cameras_owner_now(tmp_path: Path) -> None:
    # One tenant removed camera "lobby" and another registered the same id at once: the old worker's last
    # events (and the new one's) say whose they are; the registry answers only for unmarked ones.
    repo = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        acme, globex = repo.create_tenant("acme"), repo.create_tenant("globex")
        store = SightingStore(repo)
        writer = SightingWriter(store, CameraOwners(lambda camera: globex), lambda stored: None, PendingGroups())
        face = recognized("lobby", 1)
        marked = BusMessage(destination="/queue/q", headers={TENANT_HEADER: acme}, body=face.encode(),
                            subscription="s", ack_id="1")
        unmarked = BusMessage(destination="/queue/q", headers={}, body=recognized("lobby", 2).encode(),
                              subscription="s", ack_id="2")
        asyncio.run(writer.write_until_stored([marked, unmarked]))
        assert [s.track for s in store.newest(acme, SightingFilter(), None, 10)] == [1]
        assert [s.track for s in store.newest(globex, SightingFilter(), None, 10)] == [2]
    finally:
        repo.close()


def test_an_unknown_camera_is_asked_again_not_remembered() -> None:
    answers = iter([None, "acme"])
    owners = CameraOwners(lambda camera: next(answers))
    assert owners.owner("lobby") is None
    assert owners.owner("lobby") == "acme"  # registered a moment later
    assert owners.owner("lobby") == "acme"  # remembered now (the lookup is not asked a third time)
