"""Helpers for several real nodes: a RabbitMQ virtual host of one's own, STOMP requests whose every
reply is counted, a camera's events as received, a process's children.

Imports no pytest (nor conftest): bench/nodes.py uses it too.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stomp

from broker.client import BrokerAddress, BusClient

__all__ = ("API", "rabbit_vhost", "drop_rabbit_vhost", "RawRequests", "Events", "children", "parent_pid",
           "process_gone")

API = "/queue/facewatch.api"


def rabbit_vhost() -> str | None:
    """A RabbitMQ virtual host of one's own (other runs use the same broker), or None when rabbitmqctl is
    not usable here (then "/": the API queue may be shared)."""
    name = f"fwtest_{uuid.uuid4().hex[:8]}"
    try:
        for args in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
            subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return name


def drop_rabbit_vhost(name: str | None) -> None:
    if name:
        subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, timeout=60)


class RawRequests:
    """STOMP requests with chosen headers, and every reply counted: what a client sees, duplicates included."""

    def __init__(self, address: BrokerAddress) -> None:
        self.replies: dict[str, list[Any]] = {}
        self.cond = threading.Condition()
        self.conn = stomp.Connection([(address.host, address.port)], vhost=address.vhost, auto_decode=False)
        self.conn.set_listener("replies", self)
        self.conn.connect(address.login, address.passcode, wait=True)
        self.reply_to = f"/temp-queue/requests-{uuid.uuid4().hex[:8]}"

    def on_message(self, frame: Any) -> None:
        with self.cond:
            self.replies.setdefault(frame.headers.get("correlation-id", ""), []).append(frame)
            self.cond.notify_all()

    def send(self, correlation: str, method: str, path: str, body: Any, api_key: str, **headers: str) -> None:
        self.conn.send(API, json.dumps(body).encode(), headers={
            "method": method, "path": path, "x-api-key": api_key, "content-type": "application/json",
            "reply-to": self.reply_to, "correlation-id": correlation, **headers})

    def wait(self, correlations: list[str], timeout_s: float = 120) -> dict[str, list[Any]]:
        with self.cond:
            if not self.cond.wait_for(lambda: all(c in self.replies for c in correlations), timeout_s):
                missing = [c for c in correlations if c not in self.replies]
                raise AssertionError(f"no reply to {len(missing)} of {len(correlations)} requests")
            return {c: list(self.replies[c]) for c in correlations}

    def close(self) -> None:
        self.conn.disconnect()


class Events:
    """Every JSON event on a destination, in the order received, each with ``_received`` (wall clock)."""

    def __init__(self, bus: BusClient, destination: str) -> None:
        self.items: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.bus = bus
        self.sub_id = bus.subscribe(destination, self._on_message, receipt=True)  # in place when this returns

    def _on_message(self, message: Any) -> None:
        event = json.loads(message.body)
        event["_received"] = time.time()
        with self.cond:
            self.items.append(event)
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float,
                 after: int = 0) -> tuple[int, dict[str, Any]]:
        """The first event from position ``after`` on that matches, with its position."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                for i in range(after, len(self.items)):
                    if predicate(self.items[i]):
                        return i, self.items[i]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(e.get("camera"), e.get("type"), e.get("state"), e.get("node"), e.get("lease"))
                            for e in self.items[after:]][-15:]
                    raise AssertionError(f"no matching event in {timeout_s}s; last seen: {seen}")
                self.cond.wait(left)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.cond:
            return list(self.items)

    def close(self) -> None:
        self.bus.unsubscribe(self.sub_id)


def children(pid: int) -> list[int]:
    """A process's children (Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_gone(pid: int) -> bool:
    """The process has exited (a zombie whose parent has not reaped it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
