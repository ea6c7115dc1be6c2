"""A gallery that does not exist is a 404 on every route that searches or reads it (never a
photo full of "unknown"), and a read-only key changes nothing on any route. Both are checked
over every route of the gateway's own OpenAPI document, so a new route is covered too."""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import images
import pytest
from helpers import JPEG, assert_problem, enroll, new_identity
from stack import Stack

# Routes a read-scoped key may call: reads, and the searches that store nothing.
READ_POSTS = {
    "/v1/collections/{collection}/recognize",
    "/v1/collections/{collection}/identities/{identity_id}/verify",
    "/v1/collections/{collection}/images/lookup",
    "/v1/collections/{collection}/search",
    "/v1/detect",
    "/v1/verify",
    "/v1/represent",
}
# Routes that make a gallery that does not exist yet: explicit create, enrolment (an
# identity), and a batch.
CREATORS = {
    ("PUT", "/v1/collections/{collection}"),
    ("POST", "/v1/collections/{collection}/identities"),
    ("POST", "/v1/collections/{collection}/batches"),
    ("POST", "/v1/collections/{collection}/import"),
}
# Routes that need an admin key: with a read key they answer 403 like write routes.
ADMIN_ONLY = (
    "/v1/keys",
    "/v1/tenant",
    "/v1/webhook-secret",
    "/v1/dead-letters",
    "/v1/audit",
    "/v1/archive-secret",
)
# A gallery's archive holds every vector of it, a migration changes its model: admin only.
ADMIN_ONLY_ENDS = (
    "/export",
    "/import",
    "/migration",
    "/migration/check",
    "/migration/cutover",
    "/migration/rollback",
    "/migration/finish",
)
# A value for each field a JSON body may have, valid on its own; a body gets those its
# schema names.
SAMPLE_FIELDS: dict[str, Any] = {
    "sha256": ["0" * 64],
    "name": "x",
    "into": str(uuid.uuid4()),
    "threshold": 0.5,
    "scopes": ["read"],
    "model_pack": "buffalo_sc",
    "embedding": [1.0] + [0.0] * 511,
    "model": {"pack": "buffalo_sc", "model": "w600k_mbf", "version": "0" * 16, "dim": 512},
}


def openapi(stack: Stack) -> dict[str, Any]:
    spec: dict[str, Any] = httpx.get(f"{stack.url}/openapi.json", timeout=30).json()
    return spec


def routes(stack: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    spec = openapi(stack)
    found = []
    for path, methods in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in methods.items():
            found.append((method.upper(), path, operation))
    assert len(found) > 30
    return found


def is_read(method: str, path: str) -> bool:
    admin = path.startswith(ADMIN_ONLY) or path.endswith(ADMIN_ONLY_ENDS)
    return (method == "GET" or (method == "POST" and path in READ_POSTS)) and not admin


def request_for(operation: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Something valid to send: images for multipart routes, for JSON ones the fields of
    SAMPLE_FIELDS that the body's schema names (bodies refuse fields they do not name)."""
    body = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in body:
        schema_ref = body["multipart/form-data"]["schema"].get("$ref", "")
        fields = ("image1", "image2") if "verify_v1_verify" in schema_ref else ("image",)
        return {"files": [(f, ("p.jpg", images.portrait(), JPEG)) for f in fields]}
    if "application/json" in body:
        schema = body["application/json"]["schema"]
        ref = schema.get("$ref") or schema["anyOf"][0]["$ref"]
        fields = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
        return {"json": {name: SAMPLE_FIELDS[name] for name in fields if name in SAMPLE_FIELDS}}
    return {}


def fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


@pytest.fixture(scope="module")
def read_key(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.url, timeout=60, headers={"X-API-Key": stack.admin_key}
    ) as admin:
        created = admin.post("/v1/keys", json={"name": "reader", "scopes": ["read"]})
        assert created.status_code == 201, created.text
    with httpx.Client(
        base_url=stack.url, timeout=60, headers={"X-API-Key": created.json()["key"]}
    ) as client:
        yield client


def snapshot(api: httpx.Client, collection: str) -> dict[str, Any]:
    """Everything a call could have changed, as the admin key sees it."""
    base = f"/v1/collections/{collection}"
    identities = api.get(f"{base}/identities").json()["identities"]
    return {
        "collections": api.get("/v1/collections").json(),
        "gallery": api.get(base).json(),
        "identities": identities,
        "faces": [api.get(f"{base}/identities/{i['id']}/faces").json() for i in identities],
        "batches": [
            {k: b[k] for k in ("id", "status", "counts", "name")}
            for b in api.get(f"{base}/batches").json()["batches"]
        ],
        "people": api.get(f"{base}/people").json(),
        # Using a key is not changing it: when each was last used moves, nothing else.
        "keys": [
            {k: v for k, v in key.items() if k != "last_used_at"}
            for key in api.get("/v1/keys").json()["keys"]
        ],
        "secret": api.get("/v1/webhook-secret").json(),
    }


def test_a_read_key_changes_nothing_on_any_route(
    stack: Stack, api: httpx.Client, read_key: httpx.Client
) -> None:
    collection = f"scope-{uuid.uuid4().hex[:8]}"
    identity = new_identity(api, collection, "Yao Ming")
    face = enroll(api, collection, identity, images.portrait())["faces"][0]["face_id"]
    batch = api.post(f"/v1/collections/{collection}/batches", json={"name": "b"}).json()["id"]
    job = api.post("/v1/detect", files={"image": ("p.jpg", images.portrait(), JPEG)}).json()
    prefix = read_key.headers["x-api-key"][:14]
    values = {
        "collection": collection,
        "identity_id": identity,
        "face_id": face,
        "batch_id": batch,
        "person_id": str(uuid.uuid4()),
        "job_id": job["job_id"],
        "prefix": prefix,
        "letter_id": str(uuid.uuid4()),
    }
    before = snapshot(api, collection)
    spec = openapi(stack)
    checked = 0
    for method, path, operation in routes(stack):
        response = read_key.request(method, fill(path, values), **request_for(operation, spec))
        where = f"{method} {path}: {response.status_code} {response.text[:200]}"
        if is_read(method, path):
            assert response.status_code != 403 and response.status_code < 500, where
        else:
            assert_problem(response, 403, "forbidden")
        checked += 1
    assert checked > 30
    assert snapshot(api, collection) == before


def test_a_gallery_that_does_not_exist_is_404_everywhere_but_where_it_is_made(
    stack: Stack, api: httpx.Client
) -> None:
    # A real gallery next to the missing one, as a user who mistyped its name has.
    real = f"staff-{uuid.uuid4().hex[:8]}"
    identity = new_identity(api, real, "Yao Ming")
    enroll(api, real, identity, images.portrait())
    missing = real[:-1]
    values = {
        "collection": missing,
        "identity_id": identity,
        "face_id": str(uuid.uuid4()),
        "batch_id": str(uuid.uuid4()),
        "person_id": str(uuid.uuid4()),
    }
    tried = 0
    spec = openapi(stack)
    for method, path, operation in routes(stack):
        if "{collection}" not in path or (method, path) in CREATORS:
            continue
        response = api.request(method, fill(path, values), **request_for(operation, spec))
        body = assert_problem(response, 404, "collection-not-found")
        assert repr(missing) in body["detail"], body
        tried += 1
    assert tried >= 20
    names = [c["name"] for c in api.get("/v1/collections").json()["collections"]]
    assert missing not in names and real in names
    # The mistyped name never answered "unknown"; the right one finds the person.
    recognized = api.post(
        f"/v1/collections/{real}/recognize",
        params={"wait": 30},
        files={"image": ("p.jpg", images.portrait(), JPEG)},
    ).json()["result"]
    assert recognized["faces"][0]["identity"]["id"] == identity


def test_galleries_are_made_by_an_explicit_create_or_enrolment(api: httpx.Client) -> None:
    name = f"made-{uuid.uuid4().hex[:8]}"
    created = api.put(f"/v1/collections/{name}")
    assert created.status_code == 201 and created.json()["identities"] == 0
    assert api.put(f"/v1/collections/{name}").status_code == 200  # safe to repeat
    assert api.get(f"/v1/collections/{name}").json()["name"] == name
    result = api.post(
        f"/v1/collections/{name}/recognize",
        params={"wait": 30},
        files={"image": ("p.jpg", images.portrait(), JPEG)},
    )
    assert result.status_code == 200 and result.json()["result"]["faces"][0]["identity"] is None
    other = f"enrolled-{uuid.uuid4().hex[:8]}"
    new_identity(api, other, "Someone")
    assert api.get(f"/v1/collections/{other}").status_code == 200
