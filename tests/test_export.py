"""Gallery archives: an export imported into another gallery and another tenant answers
every search as the source does, and an archive that is corrupt, cut short, of another
model or signed by another tenant is refused with a problem saying which."""

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from facerec_common.names import archive_secret_key
from helpers import (
    JPEG,
    assert_problem,
    cli,
    client_for,
    done,
    enroll,
    make_gallery,
    new_identity,
    unique,
    upload,
)
from images import crowd, group_photo, portrait, variant
from stack import Stack

NDJSON = {"content-type": "application/x-ndjson"}  # as export answers it


@pytest.fixture(scope="module")
def other_tenant(stack: Stack) -> Iterator[httpx.Client]:
    key = cli(stack, "create", "--tenant", unique("archive"), "--scopes", "read,write,admin")
    with client_for(stack, str(key["key"])) as client:
        yield client


def enrol_largest(api: httpx.Client, collection: str, identity: str, image: bytes) -> None:
    done(
        api.post(
            f"/v1/collections/{collection}/identities/{identity}/faces",
            params={"wait": 30, "largest_face": "true"},
            files=[("image", ("largest.jpg", image, JPEG))],
        )
    )


def probes(api: httpx.Client) -> tuple[dict[str, Any], list[list[float]]]:
    """Every face of three photos as represented vectors, and their model tag."""
    model: dict[str, Any] = {}
    vectors = []
    for image in (group_photo(), crowd(), variant(portrait(), flip=True)):
        result = done(api.post("/v1/represent", params={"wait": 30}, files=upload(image)))
        model = result["model"]
        vectors += [f["embedding"] for f in result["faces"] if f["embedding"] is not None]
    return model, vectors


def answers(
    api: httpx.Client, collection: str, model: dict[str, Any], vectors: list[list[float]]
) -> list[dict[str, Any]]:
    out = []
    for vector in vectors:
        response = api.post(
            f"/v1/collections/{collection}/search",
            json={"embedding": vector, "model": model, "limit": 3, "threshold": 0.2},
        )
        assert response.status_code == 200, response.text
        out.append(response.json())
    return out


def assert_same_answers(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x["identity"] == y["identity"]
        assert [c["id"] for c in x["candidates"]] == [c["id"] for c in y["candidates"]]
        assert [c["name"] for c in x["candidates"]] == [c["name"] for c in y["candidates"]]
        for c, d in zip(x["candidates"], y["candidates"], strict=True):
            assert abs(c["similarity"] - d["similarity"]) <= 1e-6


def export(api: httpx.Client, collection: str) -> bytes:
    response = api.get(f"/v1/collections/{collection}/export")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return response.content


def import_(
    api: httpx.Client, collection: str, archive: bytes, secret: str | None = None
) -> httpx.Response:
    headers = {**NDJSON, **({"X-Archive-Secret": secret} if secret else {})}
    return api.post(f"/v1/collections/{collection}/import", content=archive, headers=headers)


def resigned(archive: bytes, secret: str, change: Any) -> bytes:
    """The archive with its lines changed by ``change`` and signed again with ``secret``."""
    lines = [json.loads(line) for line in archive.splitlines()[:-1]]
    change(lines)
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    end = {
        "type": "end",
        "sha256": hashlib.sha256(body).hexdigest(),
        "signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }
    return body + json.dumps(end).encode() + b"\n"


def test_an_imported_archive_answers_every_search_as_its_source(
    api: httpx.Client, other_tenant: httpx.Client
) -> None:
    source = unique("archive-src")
    make_gallery(api, source)
    yao = new_identity(api, source, "Yao Ming")
    enroll(api, source, yao, portrait(), variant(portrait(), scale=0.8))
    response = api.post(
        f"/v1/collections/{source}/identities",
        json={"name": "Group", "metadata": {"team": "R&D", "floor": 3}},
    )
    enrol_largest(api, source, response.json()["id"], group_photo())
    enrol_largest(api, source, new_identity(api, source, "Player"), crowd())

    archive = export(api, source)
    manifest = json.loads(archive.splitlines()[0])
    assert manifest["format"] == "facerec-gallery" and manifest["format_version"] == 1
    assert manifest["metric"] == "cosine" and manifest["model"]["dim"] == 512
    assert manifest["counts"] == {"identities": 3, "faces": 4}
    kinds = [json.loads(line)["type"] for line in archive.splitlines()]
    assert kinds == ["manifest"] + ["identity"] * 3 + ["face"] * 4 + ["end"]
    face = json.loads(archive.splitlines()[4])
    vector = np.frombuffer(base64.b64decode(face["vector"]), dtype="<f4")
    assert vector.shape == (512,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5

    model, vectors = probes(api)
    expected = answers(api, source, model, vectors)
    assert any(a["identity"] and a["identity"]["id"] == yao for a in expected)
    assert sum(a["identity"] is not None for a in expected) >= 3

    # Another gallery of this tenant.
    copy = unique("archive-copy")
    imported = import_(api, copy, archive)
    assert imported.status_code == 200, imported.text
    assert imported.json()["identities"] == 3 and imported.json()["faces"] == 4
    assert_same_answers(expected, answers(api, copy, model, vectors))
    listed = api.get(f"/v1/collections/{copy}/identities").json()["identities"]
    assert {(i["name"], json.dumps(i["metadata"])) for i in listed} == {
        ("Yao Ming", "{}"),
        ("Group", json.dumps({"team": "R&D", "floor": 3})),
        ("Player", "{}"),
    }
    # The source is untouched: its points are not the copy's.
    assert_same_answers(expected, answers(api, source, model, vectors))
    # Deleting the copy leaves the source as it was.
    assert api.delete(f"/v1/collections/{copy}").status_code == 200
    assert_same_answers(expected, answers(api, source, model, vectors))

    # Another tenant, with the exporting tenant's archive secret.
    secret = api.get("/v1/archive-secret").json()["secret"]
    theirs = import_(other_tenant, source, archive, secret)
    assert theirs.status_code == 200, theirs.text
    assert_same_answers(expected, answers(other_tenant, source, model, vectors))

    # Vectors leaving and entering are in each tenant's own audit trail.
    trail = api.get("/v1/audit", params={"limit": 500}).json()["records"]
    done = {(r["action"], r["target"].get("collection")) for r in trail}
    assert {("collection.exported", source), ("collection.imported", copy)} <= done
    assert ("archive_secret.read", None) in done
    exported = next(r for r in trail if r["action"] == "collection.exported")
    assert exported["detail"] == {"identities": 3, "faces": 4}
    theirs_trail = other_tenant.get("/v1/audit").json()["records"]
    assert [r["action"] for r in theirs_trail][:1] == ["collection.imported"]


def test_an_archive_that_does_not_fit_is_refused_saying_why(
    api: httpx.Client, other_tenant: httpx.Client, stack: Stack
) -> None:
    source = unique("archive-bad")
    make_gallery(api, source)
    enroll(api, source, new_identity(api, source, "Yao Ming"), portrait())
    archive = export(api, source)
    secret = api.get("/v1/archive-secret").json()["secret"]

    def refused(client: httpx.Client, data: bytes, words: str, secret: str | None = None) -> None:
        problem = assert_problem(
            import_(client, unique("target"), data, secret), 422, "invalid-input"
        )
        assert words in problem["detail"], problem

    lines = archive.splitlines(keepends=True)
    flipped = archive.replace(b'"Yao Ming"', b'"Yao Minh"')
    refused(api, flipped, "does not match its sha256")
    refused(api, b"".join(lines[:-1]), "cut short")
    refused(api, b"".join(lines[:1] + lines[2:]), "does not match its sha256")
    refused(api, b"not an archive at all", "cut short")
    # Another tenant's archive, without that tenant's secret, or with a wrong one.
    refused(other_tenant, archive, "another tenant's archive secret")
    refused(other_tenant, archive, "another tenant's archive secret", "not-the-secret")
    # Signed properly, but not what it claims to be.
    other_model = resigned(archive, secret, lambda ls: ls[0]["model"].update(version="0" * 16))
    refused(api, other_model, "another model")
    wrong_counts = resigned(archive, secret, lambda ls: ls[0]["counts"].update(faces=5))
    refused(api, wrong_counts, "its manifest says")
    newer = resigned(archive, secret, lambda ls: ls[0].update(format_version=2))
    refused(api, newer, "format version 2")
    orphan = resigned(archive, secret, lambda ls: ls[-1].update(identity_id="x"))
    refused(api, orphan, "belongs to no identity")
    short = resigned(archive, secret, lambda ls: ls[-1].update(vector="AAAA"))
    refused(api, short, "has 0 values")

    # Not into a gallery that has identities; only with the admin scope.
    assert_problem(import_(api, source, archive), 409, "conflict")
    reader = api.post("/v1/keys", json={"name": "reader", "scopes": ["read", "write"]})
    with client_for(stack, reader.json()["key"]) as limited:
        assert_problem(limited.get(f"/v1/collections/{source}/export"), 403, "forbidden")
        assert_problem(import_(limited, unique("target"), archive), 403, "forbidden")
    assert_problem(api.get(f"/v1/collections/{unique('none')}/export"), 404, "collection-not-found")


def test_erasing_the_tenant_erases_its_archive_secret(stack: Stack) -> None:
    tenant = unique("archive-erased")
    key = cli(stack, "create", "--tenant", tenant, "--scopes", "read,write,admin")
    with client_for(stack, str(key["key"])) as client:
        assert client.get("/v1/archive-secret").status_code == 200
        with redis.Redis.from_url(stack.redis_url) as connection:
            assert connection.exists(archive_secret_key(tenant))
            assert client.delete("/v1/tenant").status_code == 200
            assert not connection.exists(archive_secret_key(tenant))
