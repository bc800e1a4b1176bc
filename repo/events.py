"""Where the repo's change events go (the events themselves: events/repo.py).

The server's topics (/topic/repo.events, grouping's) carry every tenant's changes, embeddings included.
Each tenant gets a copy of its own changes, without embeddings, on ``tenant_topic(tenant, kind)``, which
only that tenant may read (facewatch/bus_auth.py).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from events import REPO_EVENTS, Event, GroupingEvent, RepoEvent

__all__ = ("EventPublisher", "NullPublisher", "REPO_EVENTS", "TENANT_TOPIC_PREFIX", "tenant_topic", "TenantCopies")

log = logging.getLogger(__name__)

TENANT_TOPIC_PREFIX = "/topic/tenant."


def tenant_topic(tenant_id: str, kind: str) -> str:
    """A tenant's own topic of ``kind`` ("repo", "grouping"); tenant ids are hex, one topic word."""
    return f"{TENANT_TOPIC_PREFIX}{tenant_id}.{kind}"


class EventPublisher(Protocol):
    def publish(self, destination: str, body: Event | Any) -> None: ...


class NullPublisher:
    """For a repo without a broker (tests of the store, the CLI)."""

    def publish(self, destination: str, body: Event | Any) -> None:
        log.debug("event not published (no broker): %s %s", destination, getattr(body, "TYPE", ""))


class TenantCopies:
    """An ``EventPublisher`` that also publishes each tenant's change event on the tenant's own topic.

    ``kinds`` maps a server topic to the kind its copies go under (``{REPO_EVENTS: "repo"}``). The copy
    leaves out embeddings (``Event.for_tenant``): applications need to know what changed, not the vector.
    """

    def __init__(self, inner: EventPublisher, kinds: dict[str, str]) -> None:
        self.inner = inner
        self.kinds = kinds

    def publish(self, destination: str, body: Event | Any) -> None:
        self.inner.publish(destination, body)
        kind = self.kinds.get(destination)
        if kind is not None and isinstance(body, (RepoEvent, GroupingEvent)):
            self.inner.publish(tenant_topic(body.tenant, kind), body.for_tenant())
