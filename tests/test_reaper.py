"""The reaper gives back the task of a dead worker once, even when two reapers read the
same claim: the second acts on what it read only if the claim is still that one."""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from facerec_common.names import inflight_key
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


def claim(worker: str) -> str:
    return json.dumps({"worker": worker, "queue": "detect", "job_id": "j", "at": time.time()})


def test_a_claim_taken_by_another_reaper_is_not_restored_twice(client: redis.Redis) -> None:
    tag = "reaper-test-tag"
    client.hset(inflight_key(), tag, claim("detect@gone-1"))
    earlier = client.hgetall(inflight_key())
    first: list[str] = []
    second: list[str] = []
    try:
        # One reaper restores the dead worker's task; a live worker receives it again
        # under the same delivery tag and claims it.
        assert [c["worker"] for c in reap(client, first.append)] == ["detect@gone-1"]
        client.hset(inflight_key(), tag, claim("detect@spare-2"))
        # A second reaper that read the claims before all this acts on nothing.
        stale: Any = StaleReads(client, earlier)
        assert reap(stale, second.append) == []
        assert (first, second) == ([tag], [])
        held = json.loads(client.hget(inflight_key(), tag) or b"{}")
        assert held["worker"] == "detect@spare-2"
    finally:
        client.hdel(inflight_key(), tag)
