"""The OpenAPI schema is the contract: every job kind's real answer, from the real stack,
validates against the response schema its operation documents (and a deliberately wrong
body does not, so the check can fail)."""

import asyncio
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import schemathesis
from facerec_common.errors import CollectionNotFound, IdentityNotFound
from facerec_gateway.app import create_app
from facerec_gateway.identity_store import IdentityStore
from facerec_gateway.settings import GatewaySettings
from helpers import JPEG, make_gallery, new_identity, upload
from images import group_photo, no_face, portrait
from schemathesis.openapi.checks import JsonSchemaError
from stack import Stack, wait_until

SCHEMA = schemathesis.openapi.from_dict(create_app(GatewaySettings()).openapi())
WAIT = {"wait": 30}


def validated(response: httpx.Response, path: str, method: str) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), response.text
    response.request.read()  # schemathesis reads the request too; uploads are streamed
    SCHEMA[path][method].validate_response(response)
    body: dict[str, Any] = response.json()
    return body


def test_every_operation_documents_its_success_and_problem_bodies() -> None:
    schema = create_app(GatewaySettings()).openapi()
    for path, operations in schema["paths"].items():
        if path in ("/metrics", "/healthz", "/readyz"):
            continue  # plain-text metrics and probes for the orchestrator
        for method, operation in operations.items():
            responses = operation["responses"]
            success = [code for code in responses if code.startswith("2")]
            assert success, (method, path)
            for code in success:
                [content] = responses[code]["content"].values()
                # A named model, never an empty or free-form object.
                assert "$ref" in content["schema"], (method, path, code, content["schema"])
            # Each refusal and failure named by its own status, never a range, each a problem.
            errors = [code for code in responses if not code.startswith("2")]
            assert {"500", "503"} <= set(errors), (method, path)
            for code in errors:
                assert code.isdigit() and int(code) >= 400, (method, path, code)
                problem = responses[code]["content"]["application/problem+json"]["schema"]
                assert problem == {"$ref": "#/components/schemas/Problem"}, (method, path, code)
            if operation.get("security"):
                assert {"401", "403", "429"} <= set(errors), (method, path)


def test_every_job_kinds_answer_matches_its_schema(api: httpx.Client) -> None:
    collection = "contract"
    make_gallery(api, collection)
    identity = new_identity(api, collection, "Yao Ming")

    detect = validated(
        api.post("/v1/detect", params=WAIT, files=upload(group_photo())), "/v1/detect", "POST"
    )
    assert len(detect["result"]["faces"]) == 6
    verify = validated(
        api.post(
            "/v1/verify",
            params=WAIT,
            files={"image1": ("a.jpg", portrait(), JPEG), "image2": ("b.jpg", portrait(), JPEG)},
        ),
        "/v1/verify",
        "POST",
    )
    assert verify["result"]["same"] is True
    enrolled = validated(
        api.post(
            f"/v1/collections/{collection}/identities/{identity}/faces",
            params=WAIT,
            files=[("image", ("a.jpg", portrait(), JPEG)), ("image", ("b.jpg", no_face(), JPEG))],
        ),
        "/v1/collections/{collection}/identities/{identity_id}/faces",
        "POST",
    )
    assert [r["reason"] for r in enrolled["result"]["refused"]] == ["no_face"]
    recognized = validated(
        api.post(f"/v1/collections/{collection}/recognize", params=WAIT, files=upload(portrait())),
        "/v1/collections/{collection}/recognize",
        "POST",
    )
    assert recognized["result"]["faces"][0]["identity"]["id"] == identity
    verified = validated(
        api.post(
            f"/v1/collections/{collection}/identities/{identity}/verify",
            params=WAIT,
            files=upload(portrait()),
        ),
        "/v1/collections/{collection}/identities/{identity_id}/verify",
        "POST",
    )
    assert verified["result"]["same"] is True
    # Read back, each job validates against the schema of a job of any kind.
    for job in (detect, verify, enrolled, recognized, verified):
        validated(api.get(f"/v1/jobs/{job['job_id']}"), "/v1/jobs/{job_id}", "GET")


def test_a_batch_images_results_match_their_schema(api: httpx.Client) -> None:
    collection = "contract-batch"
    batch = api.post(f"/v1/collections/{collection}/batches").json()["id"]
    added = api.post(
        f"/v1/collections/{collection}/batches/{batch}/images",
        files=[("image", ("group.jpg", group_photo(), JPEG))],
    )
    assert added.status_code == 202, added.text
    [accepted] = added.json()["accepted"]
    api.post(f"/v1/collections/{collection}/batches/{batch}/close")
    url = f"/v1/collections/{collection}/batches/{batch}"
    wait_until(lambda: api.get(url).json()["status"] == "done", 120, f"batch {batch}")
    job = validated(api.get(f"/v1/jobs/{accepted['job_id']}"), "/v1/jobs/{job_id}", "GET")
    assert job["result"]["image"]["name"] == "group.jpg"
    assert all(face["unassigned"] for face in job["result"]["faces"] if not face["too_small"])
    page = validated(
        api.get(f"{url}/results"),
        "/v1/collections/{collection}/batches/{batch_id}/results",
        "GET",
    )
    [line] = page["results"]
    assert [f["face_id"] for f in line["faces"]] == [f["face_id"] for f in job["result"]["faces"]]


def test_a_body_that_breaks_the_contract_is_caught(api: httpx.Client) -> None:
    response = api.post("/v1/detect", params=WAIT, files=upload(portrait()))
    response.request.read()
    body = response.json()
    del body["result"]["faces"][0]["det_score"]
    broken = httpx.Response(
        200, json=body, request=response.request, headers={"content-type": "application/json"}
    )
    broken.elapsed = response.elapsed
    with pytest.raises(JsonSchemaError, match="violates schema"):
        SCHEMA["/v1/detect"]["POST"].validate_response(broken)


def test_every_json_body_says_it_refuses_extra_fields_and_does() -> None:
    schema = create_app(GatewaySettings()).openapi()
    bodies = [
        operation["requestBody"]["content"]["application/json"]["schema"]
        for operations in schema["paths"].values()
        for operation in operations.values()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert bodies
    # A body that may be left out is anyOf the model and null.
    refs = [b["$ref"] if "$ref" in b else b["anyOf"][0]["$ref"] for b in bodies]
    for ref in refs:
        model = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert model.get("additionalProperties") is False, ref


def test_an_extra_field_is_refused_by_name(api: httpx.Client) -> None:
    make_gallery(api, "extras")
    response = api.post("/v1/collections/extras/identities", json={"name": "A", "nmae": "B"})
    assert response.status_code == 422, response.text
    assert "nmae" in response.json()["detail"]
    assert response.headers["content-type"] == "application/problem+json"


def test_an_out_of_range_cursor_is_a_4xx_that_names_it(api: httpx.Client) -> None:
    make_gallery(api, "cursors")
    batch = api.post("/v1/collections/cursors/batches", json={}).json()["id"]
    for cursor in ("10216120875895656448", "-1", "abc"):
        response = api.get(
            f"/v1/collections/cursors/batches/{batch}/results", params={"cursor": cursor}
        )
        assert response.status_code == 422, (cursor, response.text)
        assert "cursor" in response.json()["detail"], response.text
    identities = api.get("/v1/collections/cursors/identities", params={"cursor": "x" * 40})
    assert identities.status_code == 422, identities.text


def test_an_undeclared_method_is_a_405_that_lists_the_allowed_ones(api: httpx.Client) -> None:
    cases = {
        "/v1/collections/any": {"DELETE", "GET", "PATCH", "PUT"},
        # A literal segment is not an id: /people/cluster takes POST only.
        "/v1/collections/any/people/cluster": {"POST"},
        "/healthz": {"GET"},
    }
    for path, allowed in cases.items():
        response = api.request("TRACE", path)
        assert response.status_code == 405, (path, response.text)
        assert set(response.headers["allow"].split(", ")) == allowed, path
        assert response.json()["code"] == "method-not-allowed"
    assert api.get("/v1/collections/any/people/cluster").status_code == 405


def test_a_change_racing_an_erasure_brings_nothing_back(api: httpx.Client, stack: Stack) -> None:
    """A rename or a threshold change that read its record just before the identity or the
    gallery was erased must not write a record back (the 'deleted resource still
    available' an outside fuzzer saw once): the store's writes are replayed here with the
    record read before the erasure."""
    make_gallery(api, "race")
    identity = new_identity(api, "race", "Racer")
    tenant = GatewaySettings().bootstrap_tenant  # the tenant of the stack's admin key

    async def replay() -> None:
        client = aioredis.from_url(stack.redis_url)
        store = IdentityStore(client)
        headers = {"X-API-Key": stack.admin_key}
        try:
            async with httpx.AsyncClient(base_url=stack.url, headers=headers) as http:
                stale = await store.get(tenant, "race", identity)
                assert stale is not None
                erased = await http.delete(f"/v1/collections/race/identities/{identity}")
                assert erased.status_code == 200, erased.text
                with pytest.raises(IdentityNotFound):
                    await store.update(tenant, "race", stale, "Back", None)
                assert await store.get(tenant, "race", identity) is None
                assert (await http.delete("/v1/collections/race")).status_code == 200
                with pytest.raises(CollectionNotFound):
                    await store.set_threshold(tenant, "race", 0.4)
                assert not await store.has_collection(tenant, "race")
        finally:
            await client.aclose()

    asyncio.run(replay())
    assert api.get(f"/v1/collections/race/identities/{identity}").status_code == 404
    assert api.get("/v1/collections/race").status_code == 404
