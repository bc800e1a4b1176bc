"""Which live node should run a camera that no node runs: pure functions over what the database says.

Every node computes the same plan from the same rows, so only the chosen node
claims a camera (the lease's compare-and-set settles the rare disagreement).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from .cameras import Camera
from .leases import Lease
from .nodes import NodeInfo

__all__ = ("live_nodes", "loads", "assign", "hand_back")


def live_nodes(nodes: Iterable[NodeInfo], now: float, ttl_s: float) -> set[str]:
    """The nodes heard from less than ``ttl_s`` ago (a node's heartbeat comes every third of it) that
    have not left. A node's leases expire no sooner than it stops looking alive: it records its heartbeat
    before renewing them, with the same time."""
    return {n.name for n in nodes if n.left_at is None and now - n.last_seen < ttl_s}


def loads(leases: Iterable[Lease], now: float) -> dict[str, int]:
    """Cameras held per node."""
    counts: dict[str, int] = {}
    for lease in leases:
        if lease.owner is not None and lease.held(now):
            counts[lease.owner] = counts.get(lease.owner, 0) + 1
    return counts


def assign(orphans: Iterable[Camera], live: Collection[str], held: Mapping[str, int]) -> dict[str, str]:
    """camera id -> the live node to run it: its preferred node (``camera.node``) when that one is alive,
    else the least loaded live node (ties by name), counting what this plan has given already.
    Cameras with a live preferred node are placed first, so the others spread over what is left."""
    if not live:
        return {}
    load = {node: held.get(node, 0) for node in live}
    plan: dict[str, str] = {}
    cameras = sorted(orphans, key=lambda c: (c.node not in load, c.id))
    for camera in cameras:
        preferred = camera.node
        node = preferred if preferred is not None and preferred in load else min(load, key=lambda n: (load[n], n))
        plan[camera.id] = node
        load[node] += 1
    return plan


def hand_back(camera: Camera, holder: str, live: Collection[str]) -> bool:
    """Whether ``holder`` should give the camera up: it runs it for a preferred node that is alive again."""
    return camera.node is not None and camera.node != holder and camera.node in live
