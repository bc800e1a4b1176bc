"""Change events put back in order: what keeps in-memory state equal on every node.

Every change to a stream (a gallery's faces, a tenant's groups) gets the next
version of that stream in the same database transaction, and its event on the
bus carries that version. The broker's messages are not durable and events
from different nodes may overtake each other, so a follower applies an event
only when it is the next version of its stream; later ones wait for the missing
one. A version still missing after a grace period (a lost message, a
subscription that was down) is a gap: the follower reloads the stream from a
consistent snapshot of the database, which says which version it holds, and
then applies what it held beyond that. Comparing every stream's version with
the database now and then (``reconcile``) finds the gaps no later event reveals.

``Sequencer`` is the bookkeeping only: no locks, no I/O. Its caller serialises
calls (one lock around offer-and-apply) and does the reloading.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

__all__ = ("Sequencer", "SyncOptions", "Follower", "VersionWaiters", "wait_applied")

E = TypeVar("E")
K = TypeVar("K", bound=Hashable)


@dataclass(slots=True, frozen=True)
class SyncOptions:
    gap_grace_s: float = 0.5  # how long a missing version may be on its way before the stream is reloaded
    reconcile_interval_s: float = 5.0  # how often every stream's version is compared with the database


class Follower(Protocol):
    """In-memory state that follows a stream of versioned events (see ``Sequencer``)."""

    def apply(self, message: bytes | str | Mapping[str, Any]) -> None:
        """One message of the followed topic (an undecodable or foreign one is ignored)."""
        ...

    def due(self, grace_s: float) -> list[str]:
        """Streams with a gap open for at least ``grace_s`` (to reload)."""
        ...

    def reload(self, key: str) -> object:
        """Blocking (reads the database): the stream from a snapshot, then what was held beyond it."""
        ...

    def reconcile(self) -> int:
        """Blocking: reload every stream whose version differs from the database's; returns how many."""
        ...


@dataclass(slots=True)
class _Stream(Generic[E]):
    applied: int = 0  # every version up to this one is in the state
    held: dict[int, E] = field(default_factory=dict)  # versions beyond a missing one, waiting for it
    gap_since: float | None = None  # when the missing version was first missed
    expected: int = 0  # a version the database has (reconcile): not reaching it in time is a gap too
    reloading: int = 0  # reloads in progress: everything is held until they end
    ended: bool = False  # the stream is gone (a deleted gallery): its late events mean nothing
    # The state could not follow an applied event (mark_gap): due for a reload whatever arrives next,
    # until a reload ends; unlike a missing version, a later event does not close it.
    stale: bool = False


class Sequencer(Generic[K, E]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._streams: dict[K, _Stream[E]] = {}

    def _stream(self, key: K) -> _Stream[E]:
        stream = self._streams.get(key)
        if stream is None:
            # A stream never seen starts at version 0: that of a gallery (or tenant) without changes.
            stream = self._streams[key] = _Stream()
        return stream

    def knows(self, key: K) -> bool:
        return key in self._streams

    def applied(self, key: K) -> int:
        stream = self._streams.get(key)
        return 0 if stream is None else stream.applied

    def ended(self, key: K) -> bool:
        stream = self._streams.get(key)
        return stream is not None and stream.ended

    def offer(self, key: K, version: int, event: E) -> list[E]:
        """The events to apply now, in order: ``event`` and those it unblocks, or none (an old
        version, or one that must wait for a missing one)."""
        stream = self._stream(key)
        if stream.ended or version <= stream.applied or version in stream.held:
            return []
        if stream.reloading or version != stream.applied + 1:
            stream.held[version] = event
            if not stream.reloading and stream.gap_since is None:
                stream.gap_since = self._clock()
            return []
        stream.applied = version
        return [event, *self._release(stream)]

    def _release(self, stream: _Stream[E]) -> list[E]:
        """Held events that now follow on; the gap closes when nothing is held any more."""
        ready = []
        while (event := stream.held.pop(stream.applied + 1, None)) is not None:
            stream.applied += 1
            ready.append(event)
        if not stream.held and stream.applied >= stream.expected:
            stream.gap_since = None
        elif ready or stream.gap_since is None:
            stream.gap_since = self._clock()  # progress: the rest may still be on its way
        return ready

    def expect(self, key: K, version: int) -> None:
        """The database has reached ``version``: its events should arrive within the grace
        period; if they do not, the stream is due for a reload."""
        stream = self._stream(key)
        if stream.ended or version <= stream.applied:
            return
        stream.expected = max(stream.expected, version)
        if stream.gap_since is None:
            stream.gap_since = self._clock()

    def mark_gap(self, key: K) -> None:
        """The state cannot follow an event (it lacks what it would need): reload at the next check."""
        stream = self._stream(key)
        if not stream.ended:
            stream.stale = True

    def begin_reload(self, key: K) -> None:
        """From now on every event of ``key`` is held, until ``end_reload``."""
        self._stream(key).reloading += 1

    def abort_reload(self, key: K) -> None:
        """A reload failed: the stream stays as it was (with its gap, to try again later)."""
        stream = self._stream(key)
        stream.reloading = max(0, stream.reloading - 1)
        if stream.held and stream.gap_since is None:
            stream.gap_since = self._clock()

    def end_reload(self, key: K, version: int | None) -> list[E]:
        """The state was reloaded at ``version`` (None: the stream no longer exists). Returns the
        held events beyond it that follow on, to apply on the reloaded state."""
        stream = self._stream(key)
        stream.reloading = max(0, stream.reloading - 1)
        if version is None:
            self.end(key)
            return []
        if stream.ended or stream.reloading:
            return []  # gone meanwhile, or another reload under way will decide
        # The state is now the database's at ``version``, whatever was applied before.
        stream.held = {v: e for v, e in stream.held.items() if v > version}
        stream.applied = version
        stream.stale = False
        return self._release(stream)

    def end(self, key: K) -> None:
        """The stream is gone: forget what it held, ignore what comes late."""
        stream = self._stream(key)
        stream.ended, stream.held, stream.gap_since, stream.stale = True, {}, None, False

    def due(self, older_than_s: float) -> list[K]:
        """Streams marked stale, or whose gap has been open at least ``older_than_s`` (and not being
        reloaded)."""
        now = self._clock()
        return [key for key, s in self._streams.items() if not s.reloading and (
            s.stale or (s.gap_since is not None and now - s.gap_since >= older_than_s))]

    def keys(self) -> list[K]:
        """Streams known and not ended."""
        return [key for key, s in self._streams.items() if not s.ended]


class VersionWaiters(Generic[K]):
    """Callbacks waiting until a stream holds a version (a follower's ``when_applied``). No locks: the
    follower calls every method under its own lock."""

    def __init__(self) -> None:
        self._waiting: dict[int, tuple[K, int, Callable[[], None]]] = {}
        self._tokens = itertools.count()

    def add(self, key: K, version: int, callback: Callable[[], None]) -> int:
        token = next(self._tokens)
        self._waiting[token] = (key, version, callback)
        return token

    def forget(self, token: int) -> None:
        self._waiting.pop(token, None)

    def wake(self, holds: Callable[[K, int], bool]) -> None:
        """Call (and forget) the callbacks whose stream ``holds`` their version now."""
        for token, (key, version, callback) in list(self._waiting.items()):
            if holds(key, version):
                del self._waiting[token]
                callback()


async def wait_applied(when_applied: Callable[[str, int, Callable[[], None]], int | None],
                       forget: Callable[[int], None], key: str, version: int, timeout_s: float) -> bool:
    """Until a follower holds ``version`` of ``key`` (``when_applied`` registers the callback a
    follower calls on whichever thread applies it), for ``timeout_s`` at most; False on timeout."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def wake() -> None:
        loop.call_soon_threadsafe(settle)

    token = when_applied(key, version, wake)
    if token is None:
        return True
    try:
        await asyncio.wait_for(done, timeout_s)
        return True
    except TimeoutError:
        return False
    finally:
        forget(token)
