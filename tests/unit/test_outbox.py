"""The API's outbox: publish never blocks the caller; events leave in order; a full outbox drops the oldest."""

from __future__ import annotations

import threading
from typing import Any

from broker.client import BusError
from events import GroupRestored
from facewatch.outbox import BusOutbox
from tests.waiting import eventually


class SlowBus:
    """Blocks every send until released, like a broker whose socket buffer is full."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.entered = threading.Event()  # a send is under way
        self.release = threading.Event()
        self.fail_next = False

    def publish(self, destination: str, body: Any, headers: dict[str, str] | None = None,
                timeout_s: float = 10.0) -> None:
        self.entered.set()
        self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise BusError("broker gone")
        self.sent.append(body)


def test_publish_returns_while_the_broker_blocks_and_order_is_kept() -> None:
    bus, outbox = SlowBus(), BusOutbox(max_events=100)
    outbox.start(bus)  # type: ignore[arg-type]
    for n in range(5):
        outbox.publish("/topic/x", {"n": n})  # would hang here if it wrote to the socket itself
    assert bus.sent == []
    bus.release.set()
    eventually(outbox.idle, timeout_s=10, what="the outbox to drain")
    assert bus.sent == [{"n": n} for n in range(5)]
    outbox.close()


def test_a_full_outbox_drops_the_oldest_and_a_failed_send_is_counted() -> None:
    bus, outbox = SlowBus(), BusOutbox(max_events=3)
    outbox.start(bus)  # type: ignore[arg-type]
    outbox.publish("/topic/x", {"n": 0})
    assert bus.entered.wait(10)  # n=0 is being sent (and stays queued until it has been)
    for n in range(1, 6):
        outbox.publish("/topic/x", {"n": n})
    assert outbox.dropped == 3  # 0, 1 and 2 made room for 3, 4 and 5
    bus.fail_next = True  # the send under way (n=0) fails
    bus.release.set()
    eventually(outbox.idle, timeout_s=10, what="the outbox to drain")
    assert outbox.lost == 1 and bus.sent == [{"n": 3}, {"n": 4}, {"n": 5}]
    outbox.close()
    outbox.publish("/topic/x", {"n": 9})  # after close: dropped, not queued
    assert outbox.idle() and bus.sent[-1] == {"n": 5}


def test_events_leave_as_their_json_objects() -> None:
    bus, outbox = SlowBus(), BusOutbox(max_events=10)
    outbox.start(bus)  # type: ignore[arg-type]
    event = GroupRestored(tenant="t", group="g", version=3)
    outbox.publish("/topic/grouping.events", event)
    outbox.publish("/topic/x", {"n": 1})  # anything else as it is
    bus.release.set()
    eventually(outbox.idle, timeout_s=10, what="the outbox to drain")
    assert bus.sent == [event.to_json(), {"n": 1}]
    outbox.close()
