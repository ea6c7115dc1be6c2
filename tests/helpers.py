"""Small helpers for calling the API in tests: shared by the test modules, which import
nothing from each other."""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable
from typing import Any

import httpx
import images
from prometheus_client.metrics_core import Metric
from stack import Stack, wait_until

JPEG = "image/jpeg"


def histogram_count_sum(families: Iterable[Metric], name: str) -> tuple[float, float]:
    """A histogram's observation count and sum, from a registry's or a scrape's families."""
    count = total = 0.0
    for family in families:
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    return count, total


def upload(data: bytes, name: str = "image.jpg", field: str = "image") -> dict[str, Any]:
    return {field: (name, data, JPEG)}


def done(response: httpx.Response) -> dict[str, Any]:
    """The result of a job that was waited for; fails the test if it did not finish."""
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "done", body
    result: dict[str, Any] = body["result"]
    return result


def new_identity(api: httpx.Client, collection: str, name: str) -> str:
    response = api.post(f"/v1/collections/{collection}/identities", json={"name": name})
    assert response.status_code == 201, response.text
    identity: str = response.json()["id"]
    return identity


def enroll(
    api: httpx.Client, collection: str, identity: str, *images: bytes, **params: Any
) -> dict[str, Any]:
    files = [("image", (f"face{i}.jpg", data, JPEG)) for i, data in enumerate(images)]
    return done(
        api.post(
            f"/v1/collections/{collection}/identities/{identity}/faces",
            params={"wait": 30, **params},
            files=files,
        )
    )


def make_gallery(api: httpx.Client, collection: str) -> None:
    """Only enrolment or an explicit create makes a gallery; recognising in one that does
    not exist is a 404."""
    response = api.put(f"/v1/collections/{collection}")
    assert response.status_code in (200, 201), response.text


def recognize(api: httpx.Client, collection: str, image: bytes, **params: Any) -> dict[str, Any]:
    make_gallery(api, collection)
    return done(
        api.post(
            f"/v1/collections/{collection}/recognize",
            params={"wait": 30, **params},
            files=upload(image),
        )
    )


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{code}", body
    assert body["status"] == status
    assert body["detail"]
    return body


def cli(stack: Stack, *args: str) -> dict[str, object]:
    """The operator's key tool, run as a user would run it."""
    out = subprocess.run(
        [sys.executable, "-m", "facerec_gateway.cli", *args],
        env={**os.environ, "FACEREC_REDIS_URL": stack.redis_url},
        capture_output=True,
        text=True,
        check=True,
    )
    created: dict[str, object] = json.loads(out.stdout.splitlines()[0])
    return created


def client_for(stack: Stack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.url, timeout=60, headers={"X-API-Key": key})


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def scenes(n: int) -> list[bytes]:
    """``n`` different photos (different bytes) of the group and the portrait."""
    out = []
    for i in range(n):
        source = images.group_photo() if i % 2 == 0 else images.portrait()
        out.append(
            images.variant(source, flip=i % 4 >= 2, scale=0.9 + 0.02 * i, quality=80 + i % 10)
        )
    return out


def new_batch(api: httpx.Client, collection: str, **body: Any) -> str:
    response = api.post(f"/v1/collections/{collection}/batches", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "open"
    batch_id: str = response.json()["id"]
    return batch_id


def add(
    api: httpx.Client, collection: str, batch: str, files: list[tuple[str, bytes]]
) -> dict[str, Any]:
    response = api.post(
        f"/v1/collections/{collection}/batches/{batch}/images",
        files=[("image", (name, data, JPEG)) for name, data in files],
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def finished(
    api: httpx.Client, collection: str, batch: str, timeout_s: float = 120
) -> dict[str, Any]:
    url = f"/v1/collections/{collection}/batches/{batch}"
    wait_until(lambda: api.get(url).json()["status"] == "done", timeout_s, f"batch {batch}")
    body: dict[str, Any] = api.get(url).json()
    return body


def all_results(api: httpx.Client, collection: str, batch: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    cursor: int | None = 0
    while cursor is not None:
        page = api.get(
            f"/v1/collections/{collection}/batches/{batch}/results",
            params={"limit": 3, "cursor": cursor},
        ).json()
        results += page["results"]
        cursor = page["next_cursor"]
    return results
