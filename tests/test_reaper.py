"""The reaper gives back the task of a dead worker once, even when two reapers read the
same claim: the second acts on what it read only if the claim is still that one."""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from facerec_common.heartbeat import beat_value
from facerec_common.names import UNACKED_INDEX, Queue, inflight_key, reaping_key, workers_key
from facerec_common.reaper import reap
from stack import redis_server


@pytest.fixture
def client(tmp_path: Path) -> Iterator[redis.Redis]:
    """A Redis of its own: the reapers of a running stack would take these claims too."""
    with redis_server(tmp_path) as url, redis.Redis.from_url(url) as connection:
        yield connection


class StaleReads:
    """A Redis client whose read of the claims returns what they were earlier: a reaper
    that read them just before another reaper acted."""

    def __init__(self, client: redis.Redis, claims: dict[Any, Any]) -> None:
        self._client = client
        self._claims = claims

    def hgetall(self, key: str) -> Any:
        return self._claims if key == inflight_key() else self._client.hgetall(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


# How long an unclaimed delivery waits here before a reaper restores it.
GRACE_S = 10.0


def claim(worker: str, queue: str = "detect") -> str:
    return json.dumps({"worker": worker, "queue": queue, "job_id": "j", "at": time.time()})


def test_a_claim_taken_by_another_reaper_is_not_restored_twice(client: redis.Redis) -> None:
    tag = "reaper-test-tag"
    client.hset(inflight_key(), tag, claim("detect@gone-1"))
    earlier = client.hgetall(inflight_key())
    first: list[str] = []
    second: list[str] = []
    try:
        # One reaper restores the dead worker's task; a live worker receives it again
        # under the same delivery tag and claims it.
        assert [c["worker"] for c in reap(client, first.append, GRACE_S)] == ["detect@gone-1"]
        client.hset(inflight_key(), tag, claim("detect@spare-2"))
        # A second reaper that read the claims before all this acts on nothing.
        stale: Any = StaleReads(client, earlier)
        assert reap(stale, second.append, GRACE_S) == []
        assert (first, second) == ([tag], [])
        held = json.loads(client.hget(inflight_key(), tag) or b"{}")
        assert held["worker"] == "detect@spare-2"
    finally:
        client.hdel(inflight_key(), tag)


def live_worker(client: redis.Redis, holding: list[str], beat_at: float) -> None:
    facts = {"holding": holding, "holding_at": beat_at}
    client.hset(workers_key(Queue.EMBED), "embed@live-1", beat_value(5, facts, now=beat_at))


def test_a_delivery_its_worker_never_claimed_is_sent_again_once(client: redis.Redis) -> None:
    """A worker killed between receiving a message and claiming it leaves the message in
    kombu's unacked list with no claim: once every live worker has beaten since and none
    holds it, one reaper restores it, once."""
    now = time.time()
    client.zadd(
        UNACKED_INDEX,
        {"lost": now - 30, "held": now - 30, "claimed": now - 30, "fresh": now - 1},
    )
    client.hset(inflight_key(), "claimed", claim("embed@live-1", "embed"))
    live_worker(client, ["held", "claimed"], beat_at=now)
    first: list[str] = []
    second: list[str] = []
    reap(client, first.append, GRACE_S)
    reap(client, second.append, GRACE_S)  # another reaper, right after
    assert (first, second) == (["lost"], [])


def test_an_unclaimed_delivery_is_left_while_a_live_beat_predates_it(
    client: redis.Redis,
) -> None:
    """A live worker whose last beat is older than the delivery may hold it: wait."""
    now = time.time()
    client.zadd(UNACKED_INDEX, {"recent": now - 12})
    live_worker(client, [], beat_at=now - 13)
    restored: list[str] = []
    reap(client, restored.append, GRACE_S)
    assert restored == []
    live_worker(client, [], beat_at=now)
    reap(client, restored.append, GRACE_S)
    assert restored == ["recent"]


class StaleDeliveries(StaleReads):
    """A client whose read of the unacked list returns what it was earlier."""

    def __init__(self, client: redis.Redis, deliveries: Any) -> None:
        super().__init__(client, client.hgetall(inflight_key()))
        self._deliveries = deliveries

    def zrangebyscore(self, *_: Any, **__: Any) -> Any:
        return self._deliveries


def test_an_unclaimed_delivery_given_out_again_is_not_restored_twice(
    client: redis.Redis,
) -> None:
    """A reaper that read the unacked list before another restored a message, and a live
    worker received it again (same tag, a new time), leaves it alone."""
    now = time.time()
    client.zadd(UNACKED_INDEX, {"again": now - 30})
    earlier = client.zrangebyscore(UNACKED_INDEX, "-inf", now, withscores=True)
    live_worker(client, [], beat_at=now)
    first: list[str] = []
    reap(client, first.append, GRACE_S)
    assert first == ["again"]
    client.delete(reaping_key("again"))  # the first reaper's hold has run out
    client.zadd(UNACKED_INDEX, {"again": time.time()})  # delivered again
    second: list[str] = []
    stale: Any = StaleDeliveries(client, earlier)
    reap(stale, second.append, GRACE_S)
    assert second == []
