"""The writer's retry rule: it waits out a database that is away, never a batch that cannot be stored."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

from sqlalchemy.exc import DataError, OperationalError, ProgrammingError, StatementError

from broker.client import BusMessage
from sightings.store import SightingStore, Stored
from sightings.writer import CameraOwners, PendingGroups, SightingWriter, WriterOptions


class _ScriptedWriter(SightingWriter):
    """``write`` fails as scripted: ``outages`` whole-database failures first, then a DataError for
    every batch that holds a poisoned body."""

    def __init__(self, outages: int) -> None:
        super().__init__(store=cast(SightingStore, None), owners=cast(CameraOwners, None),
                         on_stored=lambda stored: None, pending=PendingGroups(),
                         options=WriterOptions(retry_initial_s=0.0, retry_max_s=0.0))
        self.outages = outages
        self.written: list[bytes] = []

    def write(self, bodies: Sequence[bytes]) -> list[Stored]:
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
