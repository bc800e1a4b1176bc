"""A following client's ordering rule: each sighting once, in sequence order."""

from __future__ import annotations

from typing import Any

from sightings.follow import FeedState


def s(seq: int) -> dict[str, Any]:
    return {"seq": seq, "id": f"s{seq}"}


def seqs(out: list[dict[str, Any]]) -> list[int]:
    return [int(x["seq"]) for x in out]


def test_in_order_once_whatever_the_arrival_order() -> None:
    feed = FeedState(cursor=2)
    assert seqs(feed.offer(s(2))) == [] and feed.duplicates == 1  # at the cursor: seen before
    assert seqs(feed.offer(s(4))) == [] and feed.gap  # 3 is missing: held
    assert seqs(feed.offer(s(4))) == [] and feed.duplicates == 2
    assert seqs(feed.offer(s(3))) == [3, 4] and not feed.gap
    assert seqs(feed.offer(s(5))) == [5] and feed.cursor == 5


def test_a_complete_catch_up_skips_the_holes_retention_left() -> None:
    feed = FeedState(cursor=0)
    assert seqs(feed.offer(s(2))) == []  # 1 expired before the client asked
    assert seqs(feed.offer(s(5))) == []
    assert seqs(feed.offer(s(7))) == []
    assert seqs(feed.complete_to(4)) == [2, 5]  # nothing else exists up to 4: 5 is next in line
    assert feed.cursor == 5 and feed.gap  # 6 still missing
    assert seqs(feed.complete_to(6)) == [7] and feed.cursor == 7 and not feed.gap
