"""Small helpers for calling the API in tests."""

from typing import Any

import httpx

JPEG = "image/jpeg"


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


def enroll(api: httpx.Client, collection: str, identity: str, *images: bytes) -> dict[str, Any]:
    files = [("image", (f"face{i}.jpg", data, JPEG)) for i, data in enumerate(images)]
    return done(
        api.post(
            f"/v1/collections/{collection}/identities/{identity}/faces",
            params={"wait": 30},
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
