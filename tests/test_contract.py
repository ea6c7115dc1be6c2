"""The OpenAPI schema is the contract: every job kind's real answer, from the real stack,
validates against the response schema its operation documents (and a deliberately wrong
body does not, so the check can fail)."""

from typing import Any

import httpx
import pytest
import schemathesis
from facerec_gateway.app import create_app
from facerec_gateway.settings import GatewaySettings
from helpers import JPEG, make_gallery, new_identity, upload
from images import group_photo, no_face, portrait
from schemathesis.openapi.checks import JsonSchemaError
from stack import wait_until

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
            problem = responses["4XX"]["content"]["application/problem+json"]["schema"]
            assert problem == {"$ref": "#/components/schemas/Problem"}, (method, path)


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
