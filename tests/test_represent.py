"""Embeddings out and in: represent hands out every face's vector tagged with its model;
a gallery is searched with such a vector, and a vector that does not fit is refused with a
problem that says why."""

import base64
import math
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from facerec_gateway.app import create_app
from facerec_gateway.settings import GatewaySettings
from helpers import (
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
from images import group_photo, portrait, variant
from stack import Stack

SCHEMA = schemathesis.openapi.from_dict(create_app(GatewaySettings()).openapi())
WAIT = {"wait": 30}


def validated(response: httpx.Response, path: str, method: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    response.request.read()
    SCHEMA[path][method].validate_response(response)
    body: dict[str, Any] = response.json()
    return body


def represent(api: httpx.Client, image: bytes, **params: Any) -> dict[str, Any]:
    response = api.post("/v1/represent", params={**WAIT, **params}, files=upload(image))
    result: dict[str, Any] = validated(response, "/v1/represent", "POST")["result"]
    return result


def vectors_of(result: dict[str, Any]) -> list[np.ndarray[Any, np.dtype[np.float32]]]:
    out = []
    for face in result["faces"]:
        if face["too_small"]:
            assert face["embedding"] is None and face["embedding_b64"] is None
            continue
        if result["encoding"] == "base64":
            raw = base64.b64decode(face["embedding_b64"])
            out.append(np.frombuffer(raw, dtype="<f4"))
        else:
            out.append(np.array(face["embedding"], dtype=np.float32))
    return out


def search(api: httpx.Client, collection: str, **body: Any) -> httpx.Response:
    return api.post(f"/v1/collections/{collection}/search", json=body)


def test_represent_gives_every_face_a_unit_vector_tagged_with_its_model(
    api: httpx.Client,
) -> None:
    result = represent(api, group_photo())
    model = result["model"]
    assert model["pack"] == "buffalo_sc" and model["model"] == "w600k_mbf"
    assert model["dim"] == 512 and model["normalisation"] == "l2"
    assert len(model["version"]) == 16 and int(model["version"], 16) >= 0
    assert result["encoding"] == "json" and len(result["faces"]) == 6
    vectors = vectors_of(result)
    assert len(vectors) == 6
    for face, vector in zip(result["faces"], vectors, strict=True):
        assert len(face["bbox"]) == 4 and len(face["landmarks"]) == 5 and face["det_score"] > 0
        assert vector.shape == (512,) and np.all(np.isfinite(vector))
        assert math.isclose(float(np.linalg.norm(vector)), 1.0, abs_tol=1e-5)
    # Six different people: no two of their vectors are alike.
    similarities = np.stack(vectors) @ np.stack(vectors).T
    assert float(np.max(similarities - np.eye(6))) < 0.5

    # The compact encoding holds the same float32 values, and the same tag.
    compact = represent(api, group_photo(), encoding="base64")
    assert compact["encoding"] == "base64" and compact["model"] == model
    assert all(face["embedding"] is None for face in compact["faces"])
    for a, b in zip(vectors, vectors_of(compact), strict=True):
        assert np.allclose(a, b, atol=1e-6)

    # The job reads back the same through /v1/jobs.
    job = api.post("/v1/represent", params=WAIT, files=upload(portrait())).json()
    again = validated(api.get(f"/v1/jobs/{job['job_id']}"), "/v1/jobs/{job_id}", "GET")
    assert again["kind"] == "represent" and again["result"]["model"] == model


def test_a_represented_vector_finds_the_enrolled_identity(stack: Stack, api: httpx.Client) -> None:
    collection = unique("vectors")
    make_gallery(api, collection)
    yao = new_identity(api, collection, "Yao Ming")
    enroll(api, collection, yao, portrait())

    probe = represent(api, variant(portrait(), flip=True))
    [vector] = vectors_of(probe)
    response = search(api, collection, embedding=vector.tolist(), model=probe["model"], limit=3)
    found = validated(response, "/v1/collections/{collection}/search", "POST")
    assert found["identity"] == {"id": yao, "name": "Yao Ming"}, found
    assert found["similarity"] >= found["threshold"] and found["model"] == probe["model"]
    assert [c["id"] for c in found["candidates"]] == [yao]
    # The same answer as recognising the photo the vector came from.
    recognized = done(
        api.post(
            f"/v1/collections/{collection}/recognize",
            params=WAIT,
            files=upload(variant(portrait(), flip=True)),
        )
    )
    assert abs(recognized["faces"][0]["similarity"] - found["similarity"]) <= 1e-4
    # The compact encoding, and a vector not yet of unit length, give the same answer.
    compact = base64.b64encode((vector * 3).astype("<f4").tobytes()).decode()
    same = search(api, collection, embedding_b64=compact, model=probe["model"], limit=3)
    assert same.status_code == 200, same.text
    assert same.json()["similarity"] == found["similarity"]

    # Someone else's face is nobody in this gallery.
    others = vectors_of(represent(api, group_photo()))
    stranger = search(api, collection, embedding=others[0].tolist(), model=probe["model"])
    assert stranger.status_code == 200, stranger.text
    assert stranger.json()["identity"] is None

    # Another tenant's gallery of the same name is another gallery: it does not exist for
    # them, and once made it holds nobody.
    key = cli(stack, "create", "--tenant", unique("vectors-tenant"), "--scopes", "read,write")
    with client_for(stack, str(key["key"])) as other:
        body = {"embedding": vector.tolist(), "model": probe["model"]}
        assert_problem(search(other, collection, **body), 404, "collection-not-found")
        make_gallery(other, collection)
        empty = search(other, collection, **body)
        assert empty.status_code == 200, empty.text
        assert empty.json()["identity"] is None and empty.json()["candidates"] == []


def test_a_vector_that_does_not_fit_is_refused_saying_why(api: httpx.Client) -> None:
    collection = unique("vectors-bad")
    make_gallery(api, collection)
    model = represent(api, portrait())["model"]
    unit = np.full(512, 1 / math.sqrt(512), dtype=np.float32)

    def refused(status: int, code: str, words: str, **body: Any) -> None:
        problem = assert_problem(search(api, collection, **body), status, code)
        assert words in problem["detail"], problem

    other_model = {**model, "pack": "buffalo_l", "model": "w600k_r50"}
    refused(422, "invalid-input", "another model", embedding=unit.tolist(), model=other_model)
    other_version = {**model, "version": "0" * 16}
    refused(422, "invalid-input", "version", embedding=unit.tolist(), model=other_version)
    refused(422, "invalid-input", "dimension 512", embedding=unit[:511].tolist(), model=model)
    short = {**model, "dim": 511}
    refused(422, "invalid-input", "dim 511", embedding=unit[:511].tolist(), model=short)
    nan = unit.copy()
    nan[7] = np.nan
    b64 = base64.b64encode(nan.astype("<f4").tobytes()).decode()
    refused(422, "invalid-input", "not finite", embedding_b64=b64, model=model)
    refused(422, "invalid-input", "not finite", embedding=[1e39] * 512, model=model)
    refused(422, "invalid-input", "cannot be normalised", embedding=[0.0] * 512, model=model)
    refused(422, "invalid-input", "not base64", embedding_b64="not base64!", model=model)
    refused(422, "invalid-input", "float32", embedding_b64="AAAAAAA=", model=model)
    # The body itself: both vectors, neither, no tag, a property it does not know.
    for body in (
        {"embedding": unit.tolist(), "embedding_b64": b64, "model": model},
        {"model": model},
        {"embedding": unit.tolist()},
        {"embedding": unit.tolist(), "model": model, "top": 3},
        {"embedding": unit.tolist(), "model": {**model, "extra": 1}},
    ):
        assert_problem(search(api, collection, **body), 422, "invalid-request")
    missing = search(api, unique("nowhere"), embedding=unit.tolist(), model=model)
    assert_problem(missing, 404, "collection-not-found")


@pytest.mark.parametrize("encoding", ["json", "base64"])
def test_a_represented_vector_round_trips_exactly(api: httpx.Client, encoding: str) -> None:
    """What represent hands out is the float32 vector itself: written back it is the same
    vector, bit for bit."""
    [vector] = vectors_of(represent(api, portrait(), encoding=encoding))
    assert np.array_equal(np.array(vector.tolist(), dtype=np.float32), vector)
