"""Idempotency keys (api/idempotency.py) on a real SQLite store: a write repeated with its key is applied once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from api.errors import Conflict
from api.idempotency import REPLAY_HEADER, Idempotency, IdempotencyOptions
from api.request import ApiRequest, ApiResponse
from repo.store import RepoStore, StoredAnswer, open_store


@pytest.fixture
def store(tmp_path: Path) -> RepoStore:
    return open_store(f"sqlite:///{tmp_path / 'repo.db'}")


def request(key: str | None, body: bytes = b'{"name": "a"}', method: str = "POST") -> ApiRequest:
    return ApiRequest(method, "/api/v1/galleries", headers={"idempotency-key": key} if key else {}, body=body,
                      content_type="application/json")


class Handler:
    """Counts how often the write is applied."""

    def __init__(self, status: int = 201) -> None:
        self.applied = 0
        self.status = status
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> ApiResponse:
        self.applied += 1
        await self.release.wait()
        return ApiResponse(self.status, {"applied": self.applied})


def test_a_repeated_key_gets_the_first_answer_and_the_write_applies_once(store: RepoStore) -> None:
    node_a, node_b = Idempotency(store, "a"), Idempotency(store, "b")
    write = Handler()

    async def scenario() -> tuple[ApiResponse, ApiResponse, ApiResponse]:
        first = await node_a.run("tenant", request("k1"), write)
        again = await node_b.run("tenant", request("k1"), write)  # redelivered to another node
        other_tenant = await node_b.run("globex", request("k1"), write)  # keys are per tenant
        return first, again, other_tenant

    first, again, other_tenant = asyncio.run(scenario())
    assert first.status == again.status == 201 and first.body == again.body == {"applied": 1}
    assert again.headers[REPLAY_HEADER] == "true" and REPLAY_HEADER not in first.headers
    assert other_tenant.body == {"applied": 2} and write.applied == 2


class CountingStore(RepoStore):
    """Counts the claims, so that a test waits for the fact of a claim, not for time."""

    def __init__(self, store: RepoStore) -> None:
        super().__init__(store.engine)
        self.claims = 0

    def claim_key(self, scope: str, key: str, fingerprint: str, owner: str, now: float) -> StoredAnswer | None:
        found = super().claim_key(scope, key, fingerprint, owner, now)
        self.claims += 1
        return found


def test_a_repeat_while_the_first_runs_waits_for_its_answer(store: RepoStore) -> None:
    counting = CountingStore(store)
    node_a, node_b = Idempotency(counting, "a"), Idempotency(counting, "b", IdempotencyOptions(poll_s=0.01))
    write = Handler()
    write.release.clear()

    async def scenario() -> tuple[ApiResponse, ApiResponse]:
        first = asyncio.create_task(node_a.run("tenant", request("k"), write))
        second = asyncio.create_task(node_b.run("tenant", request("k"), write))
        while counting.claims < 3:  # the first claimed it, the second found it running, and looked again
            await asyncio.sleep(0.01)
        write.release.set()
        return await first, await second

    first, second = asyncio.run(scenario())
    assert write.applied == 1 and first.body == second.body


def test_a_key_reused_for_another_request_is_refused_and_failures_are_not_kept(store: RepoStore) -> None:
    node = Idempotency(store, "a")
    failing = Handler(status=503)

    async def scenario() -> None:
        assert (await node.run("tenant", request("k"), failing)).status == 503
        assert (await node.run("tenant", request("k"), failing)).status == 503  # run again: nothing was kept
        await node.run("tenant", request("k2"), Handler())
        with pytest.raises(Conflict):
            await node.run("tenant", request("k2", body=b'{"name": "b"}'), Handler())
        plain = Handler()
        await node.run("tenant", request(None), plain)
        await node.run("tenant", request(None), plain)  # no key: every request applies
        assert plain.applied == 2
        reads = Handler(status=200)
        await node.run("tenant", request("r", method="GET"), reads)
        await node.run("tenant", request("r", method="GET"), reads)  # reads are not keyed
        assert reads.applied == 2

    asyncio.run(scenario())
    assert failing.applied == 2
