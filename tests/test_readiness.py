"""Gateway readiness: ready while Redis answers, in the same time with 200,000 unrelated keys
in Redis as with none, and ready with no worker at all. Worker presence and queue depths are
reported by /v1/status; work for a stage without a consumer is accepted and waits; only a
full queue is refused (429 with Retry-After).

A real redis-server and a real gateway process; no worker runs here, the heartbeats that
stand for workers are written as the workers write them.
"""

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from facerec_common.heartbeat import beat_value
from facerec_common.names import Queue, workers_key
from helpers import upload
from images import portrait
from stack import (
    Stack,
    fill_unrelated_keys,
    free_port,
    redis_server,
    running_stack,
    wait_until,
)

UNRELATED_KEYS = 200_000
MAX_QUEUE = 3
# The benchmark's goal is 20 ms at the 99th percentile with a million keys; a test on a
# shared two-core CI machine keeps a margin, and a keyspace scan (seconds) is far above it.
P99_LIMIT_S = 0.1


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, redis.Redis]]:
    workdir = tmp_path_factory.mktemp("readiness")
    with (
        redis_server(workdir / "redis") as url,
        running_stack(
            workdir,
            url,
            {"FACEREC_GATEWAY_MAX_QUEUE_LENGTH": str(MAX_QUEUE)},
            services=("facerec_gateway",),
        ) as stack,
    ):
        client = redis.Redis.from_url(url)
        fill_unrelated_keys(client, UNRELATED_KEYS)
        assert client.dbsize() >= UNRELATED_KEYS
        yield stack, client


@pytest.fixture
def api(gateway: tuple[Stack, redis.Redis]) -> Iterator[httpx.Client]:
    stack, _ = gateway
    with httpx.Client(base_url=stack.url, timeout=30, headers={"X-API-Key": stack.admin_key}) as c:
        yield c


def test_readyz_is_fast_with_many_keys_and_no_worker(api: httpx.Client) -> None:
    timings = []
    for _ in range(200):
        began = time.perf_counter()
        response = api.get("/readyz")
        timings.append(time.perf_counter() - began)
        assert response.status_code == 200
        assert response.json() == {"status": "ready", "checks": {"redis": "ok"}}
    timings.sort()
    p99 = timings[int(len(timings) * 0.99) - 1]
    assert p99 <= P99_LIMIT_S, f"/readyz p99 {p99 * 1000:.1f} ms with {UNRELATED_KEYS} keys"


def test_status_reports_stages_and_heartbeats(
    api: httpx.Client, gateway: tuple[Stack, redis.Redis]
) -> None:
    _, client = gateway
    status = api.get("/v1/status")
    assert status.status_code == 200
    body = status.json()
    assert body["workers_ready"] is False
    assert {name: stage["consumers"] for name, stage in body["stages"].items()} == {
        "detect": 0,
        "embed": 0,
        "index": 0,
    }
    # Beats as the workers write them: a live one counts, an expired one does not.
    now = time.time()
    for queue in Queue:
        facts = {"index_ok": True} if queue is Queue.INDEX else {}
        client.hset(workers_key(queue), f"{queue}@live", beat_value(1, facts, now))
        client.hset(workers_key(queue), f"{queue}@dead", beat_value(1, facts, now - 60))
    try:
        body = api.get("/v1/status").json()
        assert body["workers_ready"] is True
        assert all(stage["consumers"] == 1 for stage in body["stages"].values())
        assert body["stages"]["index"]["index_ok"] is True
        # Still ready, and still one PING: the beats never enter readiness.
        assert api.get("/readyz").json()["checks"] == {"redis": "ok"}
    finally:
        for queue in Queue:
            client.delete(workers_key(queue))
    assert httpx.get(f"{api.base_url}/v1/status").status_code == 401  # needs a key


def test_work_without_a_consumer_is_accepted_and_a_full_queue_refused(
    api: httpx.Client, gateway: tuple[Stack, redis.Redis]
) -> None:
    _, client = gateway
    client.delete(*[str(q) for q in Queue])
    jobs = []
    for _ in range(MAX_QUEUE + 1):
        accepted = api.post("/v1/detect", files=upload(portrait()))
        assert accepted.status_code == 202, accepted.text
        jobs.append(accepted.json()["job_id"])
    status = api.get("/v1/status").json()
    assert status["stages"]["detect"]["waiting"] == MAX_QUEUE + 1
    assert status["stages"]["detect"]["consumers"] == 0
    # The queue holds more than the limit: new work is refused until it drains.
    refused = api.post("/v1/detect", files=upload(portrait()))
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert int(refused.headers["retry-after"]) >= 1
    # What needs no worker still works: job status and gallery listing.
    job = api.get(f"/v1/jobs/{jobs[0]}")
    assert job.status_code in (200, 202) and job.json()["status"] == "queued"
    assert api.get("/v1/collections").status_code == 200
    assert api.get("/readyz").status_code == 200
    client.delete(*[str(q) for q in Queue])


def test_not_ready_while_redis_does_not_answer(tmp_path: Path) -> None:
    """A gateway whose Redis is gone answers /readyz with 503 and Retry-After, and is ready
    again once Redis is back."""
    port = free_port()
    with (
        redis_server(tmp_path / "redis", port=port) as url,
        running_stack(tmp_path, url, services=("facerec_gateway",)) as stack,
    ):
        assert httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200
        # SHUTDOWN closes the connection before it answers.
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis.from_url(url).shutdown(nosave=True)
        response = httpx.get(f"{stack.url}/readyz", timeout=10)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["type"] == "/problems/not-ready"
        with redis_server(tmp_path / "redis2", port=port):
            # The gateway's pool reconnects on its own; no restart.
            began = time.monotonic()
            wait_until(
                lambda: httpx.get(f"{stack.url}/readyz", timeout=10).status_code == 200,
                30,
                "the gateway after Redis came back",
            )
            print(f"ready again {time.monotonic() - began:.1f} s after Redis came back")
