"""Batches against the running stack: parts, duplicates, counts, results, low priority,
a gateway restart in the middle, and signed callbacks with retries."""

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import images
import pytest
import redis.asyncio as aioredis
from facerec_gateway.batch_store import Admission, BatchStore
from helpers import (
    JPEG,
    add,
    all_results,
    assert_problem,
    cli,
    client_for,
    finished,
    new_batch,
    scenes,
    unique,
)
from stack import Stack, wait_until


def test_a_batch_in_parts_counts_every_image_and_skips_what_it_has_seen(api: httpx.Client) -> None:
    collection = unique("archive")
    batch = new_batch(api, collection, name="holiday 2019")
    photos = scenes(4)
    first = add(api, collection, batch, [("a/group.jpg", photos[0]), ("a/yao.jpg", photos[1])])
    assert [a["name"] for a in first["accepted"]] == ["a/group.jpg", "a/yao.jpg"]
    assert first["accepted"][0]["sha256"] == hashlib.sha256(photos[0]).hexdigest()
    second = add(
        api,
        collection,
        batch,
        [
            ("b/group-again.jpg", photos[0]),  # same bytes as a/group.jpg
            ("b/empty-room.jpg", images.no_face()),
            ("b/notes.jpg", b"this is no image"),
            ("b/group2.jpg", photos[2]),
        ],
    )
    assert [d["name"] for d in second["duplicates"]] == ["b/group-again.jpg"]
    [refused] = second["refused"]
    assert refused["name"] == "b/notes.jpg" and refused["problem"]["status"] == 415
    assert len(second["accepted"]) == 2

    known = api.post(
        f"/v1/collections/{collection}/images/lookup",
        json={"sha256": [hashlib.sha256(p).hexdigest() for p in photos]},
    ).json()["known"]
    assert known == [hashlib.sha256(p).hexdigest() for p in photos[:3]]

    closed = api.post(f"/v1/collections/{collection}/batches/{batch}/close")
    assert closed.status_code == 200 and closed.json()["status"] in ("closed", "done")
    late = api.post(
        f"/v1/collections/{collection}/batches/{batch}/images",
        files=[("image", ("late.jpg", photos[3], JPEG))],
    )
    assert_problem(late, 409, "conflict")

    body = finished(api, collection, batch)
    counts = body["counts"]
    assert counts["submitted"] == 4 and counts["done"] == 4 and counts["failed"] == 0
    assert counts["duplicates"] == 1 and counts["queued"] == 0 and body["progress"] == 1.0
    assert counts["faces"] == 6 + 1 + 6  # two group photos and the portrait; no face in the room
    assert counts["matched"] == 0 and counts["unassigned"] == counts["faces"]

    results = all_results(api, collection, batch)
    assert sorted(r["name"] for r in results) == [
        "a/group.jpg",
        "a/yao.jpg",
        "b/empty-room.jpg",
        "b/group2.jpg",
    ]
    by_name = {r["name"]: r for r in results}
    assert len(by_name["a/group.jpg"]["faces"]) == 6 and by_name["b/empty-room.jpg"]["faces"] == []
    assert all(f["unassigned"] and f["identity"] is None for f in by_name["a/yao.jpg"]["faces"])
    assert [
        b["id"] for b in api.get(f"/v1/collections/{collection}/batches").json()["batches"]
    ] == [batch]


def test_a_batch_matches_enrolled_people(api: httpx.Client) -> None:
    collection = unique("known")
    person = api.post(f"/v1/collections/{collection}/identities", json={"name": "Yao Ming"}).json()[
        "id"
    ]
    enrolled = api.post(
        f"/v1/collections/{collection}/identities/{person}/faces",
        params={"wait": 30},
        files={"image": ("yao.jpg", images.variant(images.portrait(), flip=True, scale=1.3), JPEG)},
    )
    assert enrolled.status_code == 200, enrolled.text
    batch = new_batch(api, collection)
    add(api, collection, batch, [("yao.jpg", images.portrait())])
    api.post(f"/v1/collections/{collection}/batches/{batch}/close")
    counts = finished(api, collection, batch)["counts"]
    assert counts["faces"] == 1 and counts["matched"] == 1 and counts["unassigned"] == 0
    [result] = all_results(api, collection, batch)
    assert result["faces"][0]["identity"]["id"] == person


def test_interactive_requests_overtake_a_running_batch(api: httpx.Client) -> None:
    collection = unique("busy")
    batch = new_batch(api, collection)
    photos = scenes(40)
    for start in range(0, len(photos), 20):
        add(
            api,
            collection,
            batch,
            [(f"{i}.jpg", p) for i, p in enumerate(photos[start : start + 20], start)],
        )
    interactive = unique("interactive")
    assert api.put(f"/v1/collections/{interactive}").status_code == 201
    started = time.monotonic()
    response = api.post(
        f"/v1/collections/{interactive}/recognize",
        params={"wait": 60},
        files={"image": ("now.jpg", images.portrait(), JPEG)},
    )
    waited = time.monotonic() - started
    assert response.status_code == 200, response.text
    counts = api.get(f"/v1/collections/{collection}/batches/{batch}").json()["counts"]
    # The recognise went ahead of the batch's backlog instead of waiting behind it.
    assert counts["done"] < counts["submitted"] - 10, (counts, waited)
    api.post(f"/v1/collections/{collection}/batches/{batch}/close")
    assert finished(api, collection, batch)["counts"]["done"] == 40


def restart_gateway(stack: Stack) -> None:
    gateway = stack.procs["facerec_gateway"]
    gateway.terminate()
    gateway.wait(20)
    stack.start("facerec_gateway")

    def ready() -> bool:
        try:
            return httpx.get(f"{stack.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 60, "the restarted gateway")


def test_a_batch_survives_a_gateway_restart(stack: Stack, api: httpx.Client) -> None:
    collection = unique("restart")
    batch = new_batch(api, collection)
    photos = scenes(6)
    add(api, collection, batch, [(f"{i}.jpg", p) for i, p in enumerate(photos[:3])])
    restart_gateway(stack)
    with httpx.Client(
        base_url=stack.url, timeout=60, headers={"X-API-Key": stack.admin_key}
    ) as again:
        assert again.get(f"/v1/collections/{collection}/batches/{batch}").json()["status"] == "open"
        add(again, collection, batch, [(f"{i}.jpg", p) for i, p in enumerate(photos[3:], 3)])
        again.post(f"/v1/collections/{collection}/batches/{batch}/close")
        assert finished(again, collection, batch)["counts"]["done"] == 6


class Receiver:
    """A local HTTP server that refuses the first callback (500) and keeps the rest."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.refusals = 1
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 500 if receiver.refusals > 0 else 200
                receiver.refusals -= 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()


def test_a_finished_batch_is_posted_signed_and_retried(
    api: httpx.Client, receiver: Receiver
) -> None:
    collection = unique("hooked")
    secret = api.get("/v1/webhook-secret").json()["secret"]
    batch = new_batch(api, collection, callback_url=receiver.url)
    add(api, collection, batch, [("g.jpg", scenes(1)[0])])
    api.post(f"/v1/collections/{collection}/batches/{batch}/close")
    finished(api, collection, batch)
    url = f"/v1/collections/{collection}/batches/{batch}"
    wait_until(lambda: api.get(url).json()["callback"]["status"] == "delivered", 30, "the callback")
    assert api.get(url).json()["callback"]["attempts"] == 2
    assert len(receiver.received) == 2  # refused once, then delivered
    headers, body = receiver.received[-1]
    expected = hmac.new(
        secret.encode(), headers["x-facerec-timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["x-facerec-signature"] == f"sha256={expected}"
    summary = json.loads(body)
    assert summary["event"] == "batch.done" and summary["batch"]["id"] == batch
    assert summary["batch"]["counts"]["faces"] == 6


def test_batches_of_another_tenant_are_invisible(stack: Stack, api: httpx.Client) -> None:
    collection = unique("private")
    batch = new_batch(api, collection)
    add(api, collection, batch, [("g.jpg", scenes(1)[0])])
    key = str(cli(stack, "create", "--tenant", "batch-stranger", "--scopes", "read,write")["key"])
    with client_for(stack, key) as stranger:
        # A gallery of the same name in the other tenant: nothing of the first one shows.
        assert_problem(stranger.get(f"/v1/collections/{collection}"), 404, "collection-not-found")
        assert stranger.put(f"/v1/collections/{collection}").status_code == 201
        base = f"/v1/collections/{collection}/batches"
        assert_problem(stranger.get(f"{base}/{batch}"), 404, "not-found")
        assert_problem(stranger.get(f"{base}/{batch}/results"), 404, "not-found")
        assert_problem(stranger.post(f"{base}/{batch}/close"), 404, "not-found")
        assert stranger.get(base).json() == {"batches": []}
        lookup = stranger.post(
            f"/v1/collections/{collection}/images/lookup",
            json={"sha256": [hashlib.sha256(scenes(1)[0]).hexdigest()]},
        )
        assert lookup.json() == {"known": []}


def test_an_image_whose_job_was_not_sent_is_withdrawn(redis_url: str) -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        store = BatchStore(client)
        batch = await store.create("t-withdraw", "c", None, None)
        digest = "ab" * 32
        assert await store.admit("t-withdraw", "c", batch["id"], digest) == Admission.ADMITTED
        await store.withdraw("t-withdraw", "c", batch["id"], digest)
        assert await store.known("t-withdraw", "c", [digest]) == []
        assert await store.close(batch["id"])  # nothing submitted: done at once
        found = await store.get("t-withdraw", "c", batch["id"])
        assert found is not None and found["counts"]["submitted"] == 0
        assert found["status"] == "done"
        await client.aclose()

    asyncio.run(scenario())
