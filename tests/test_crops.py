"""Enrolled faces keep their aligned 112x112 crop, losslessly compressed, inside their index
point: the stages store it (read back from the index itself), a gallery can turn it off,
it never leaves through a result, an identity's faces or an archive, and every erasure
receipt counts the crops it deleted."""

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import images
import numpy as np
import numpy.typing as npt
import pytest
import redis
from facerec_common.codec import CROP_SIZE, unpack_crops
from facerec_common.identities import IdentityRecord
from facerec_common.messages import (
    ImageRef,
    IndexCall,
    IndexCallOp,
    JobKind,
    JobParams,
    PipelineMessage,
)
from facerec_common.names import identity_key
from facerec_common.results import EnrolResult, RecognizeResult
from facerec_detector.stage import DetectStage
from facerec_embedder.stage import EmbedStage
from facerec_indexer.calls import IndexCalls
from facerec_indexer.clustering import ClusterParams
from facerec_indexer.index import FaceIndex, FacePoint, Scope
from facerec_indexer.index.base import CROP
from facerec_indexer.index.edge import EdgeIndex
from facerec_indexer.index.server import ServerIndex
from facerec_indexer.migration import Migrations
from facerec_indexer.people import People
from facerec_indexer.stage import IndexStage
from helpers import cli, client_for, enroll, new_identity, recognize, unique
from qdrant_client import QdrantClient
from stack import Stack

TENANT = "crops"
GALLERY = "g"


@pytest.fixture
def index(tmp_path: Path) -> Iterator[EdgeIndex]:
    edge = EdgeIndex(tmp_path / "index")
    try:
        yield edge
    finally:
        edge.close()


def pipeline(
    detect: DetectStage,
    embed: EmbedStage,
    kind: JobKind,
    image: bytes,
    job: str,
    **params: object,
) -> tuple[PipelineMessage, npt.NDArray[np.uint8]]:
    """The message the index stage gets for one image, and the crops the detector made."""
    msg = PipelineMessage(
        job_id=job,
        kind=kind,
        tenant=TENANT,
        params=JobParams.model_validate({"collection": GALLERY, **params}),
        images=[ImageRef(index=0, name="face.jpg", sha256=job)],
    )
    detected = detect.run(msg, lambda _: image).forward
    assert detected is not None
    crops = unpack_crops(detected.crops).copy()
    embedded = embed.run(detected).forward
    assert embedded is not None
    return embedded, crops


def decoded(text: str) -> npt.NDArray[np.uint8]:
    data = base64.b64decode(text, validate=True)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None
    return np.asarray(pixels)


def test_an_enrolled_face_keeps_its_exact_crop_and_erasure_counts_it(
    detect: DetectStage, embed: EmbedStage, index: EdgeIndex, client: redis.Redis
) -> None:
    for identity in ("ada", "bo"):
        record = IdentityRecord(id=identity, name=identity, created_at=1.0)
        client.hset(identity_key(TENANT, GALLERY, identity), mapping=record.to_hash())
    people, migrations = People(index, ClusterParams()), Migrations(index, client, print)
    stage = IndexStage(index, client, 3, 20, people, migrations)
    calls = IndexCalls(index, people, migrations)

    kept, crops = pipeline(
        detect, embed, JobKind.ENROLL, images.portrait(), "a1", identity_id="ada"
    )
    assert len(kept.kept_crops) == 1
    # Compressed on the way: far smaller than the raw crop it stands for.
    assert len(kept.kept_crops[0]) < CROP_SIZE * CROP_SIZE * 3 / 2
    result = stage.run(kept)
    assert isinstance(result, EnrolResult) and len(result.faces) == 1
    # Not in the job's result either.
    assert '"crop"' not in result.model_dump_json()

    [point] = index.scroll(Scope(TENANT, GALLERY, "ada"))
    stored = point.payload[CROP]
    crop = decoded(stored)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    # Lossless: the very pixels the model embedded.
    assert np.array_equal(crop, crops[0])

    # A gallery that keeps no crops: the message carries none and the point has none.
    plain, _ = pipeline(
        detect,
        embed,
        JobKind.ENROLL,
        images.variant(images.portrait(), flip=True),
        "b1",
        identity_id="bo",
        keep_crops=False,
    )
    assert plain.kept_crops == []
    stage.run(plain)
    [bare] = index.scroll(Scope(TENANT, GALLERY, "bo"))
    assert CROP not in bare.payload
    # Other kinds carry no crop to the index stage.
    seen, _ = pipeline(detect, embed, JobKind.RECOGNIZE, images.portrait(), "r1")
    assert seen.kept_crops == []
    recognised = stage.run(seen)
    assert isinstance(recognised, RecognizeResult)
    assert recognised.faces[0].identity is not None
    assert stored not in recognised.model_dump_json()
    assert '"crop"' not in recognised.model_dump_json()

    def call(op: IndexCallOp, **fields: object) -> dict[str, Any]:
        msg = IndexCall.model_validate(
            {"job_id": "c", "op": op, "tenant": TENANT, "collection": GALLERY, **fields}
        )
        return calls.answer(msg)

    listed = call(IndexCallOp.IDENTITY_FACES, identity_id="ada")
    assert stored not in json.dumps(listed) and '"crop"' not in json.dumps(listed)
    assert [f["has_crop"] for f in listed["faces"]] == [True]
    archive = call(IndexCallOp.EXPORT_FACES, model=kept.model)
    assert len(archive["faces"]) == 2 and stored not in json.dumps(archive)
    assert all(CROP not in f for f in archive["faces"])

    # Erasure: a face, an identity, a gallery and a tenant each count the crops deleted.
    more, _ = pipeline(
        detect,
        embed,
        JobKind.ENROLL,
        images.variant(images.portrait(), scale=0.8),
        "a2",
        identity_id="ada",
    )
    stage.run(more)
    face = call(IndexCallOp.DELETE_FACE, identity_id="ada", face_id=point.id)
    assert face["deleted_faces"] == 1 and face["deleted_crops"] == 1
    bare_face = call(IndexCallOp.DELETE_FACE, identity_id="bo", face_id=bare.id)
    assert bare_face["deleted_faces"] == 1 and bare_face["deleted_crops"] == 0
    erased = call(IndexCallOp.DELETE_IDENTITY, identity_id="ada")
    assert erased == {"deleted": 1, "deleted_crops": 1, "remaining": 0}
    for job in ("a3", "a4"):
        image = images.variant(images.portrait(), scale=0.9 if job == "a3" else 0.7)
        stage.run(pipeline(detect, embed, JobKind.ENROLL, image, job, identity_id="bo")[0])
    assert call(IndexCallOp.DELETE_COLLECTION) == {"deleted": 2, "deleted_crops": 2, "remaining": 0}
    stage.run(pipeline(detect, embed, JobKind.ENROLL, images.portrait(), "a5", identity_id="bo")[0])
    tenant = calls.answer(IndexCall(job_id="t", op=IndexCallOp.DELETE_TENANT, tenant=TENANT))
    assert tenant == {"deleted": 1, "deleted_crops": 1, "remaining": 0}


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_both_backends_count_points_with_a_crop_and_search_without_it(
    backend: str, tmp_path: Path
) -> None:
    chosen: FaceIndex = (
        EdgeIndex(tmp_path / "edge")
        if backend == "edge"
        else ServerIndex(QdrantClient(location=":memory:"))
    )
    try:
        rng = np.random.default_rng(7)
        vectors = rng.standard_normal((3, 8)).astype(np.float32)
        extras: list[dict[str, Any]] = [{CROP: "AAAA"}, {CROP: "BBBB"}, {"image": "x.jpg"}]
        chosen.upsert(
            "m",
            8,
            [
                FacePoint(str(uuid.uuid4()), v, "t", "c", identity, extra)
                for v, identity, extra in zip(vectors, ("a", "a", "b"), extras, strict=True)
            ],
        )
        assert chosen.count(Scope("t")) == 3
        assert chosen.count(Scope("t", with_crop=True)) == 2
        assert chosen.count(Scope("t", "c", "b", with_crop=True)) == 0
        assert chosen.count(Scope("other", with_crop=True)) == 0
        [hits] = chosen.search("m", vectors[:1], Scope("t"), limit=3)
        assert hits[0].identity_id == "a" and len(hits) == 3
    finally:
        chosen.close()


def faces_of(api: httpx.Client, gallery: str, identity: str) -> list[dict[str, object]]:
    response = api.get(f"/v1/collections/{gallery}/identities/{identity}/faces")
    assert response.status_code == 200, response.text
    faces: list[dict[str, object]] = response.json()["faces"]
    return faces


def test_galleries_keep_crops_by_default_and_receipts_count_them(api: httpx.Client) -> None:
    gallery = unique("crops")
    ada = new_identity(api, gallery, "Ada")
    assert api.get(f"/v1/collections/{gallery}").json()["keep_crops"] is True
    enrolled = enroll(
        api, gallery, ada, images.portrait(), images.variant(images.portrait(), flip=True)
    )
    assert len(enrolled["faces"]) == 2
    faces = faces_of(api, gallery, ada)
    assert [f["has_crop"] for f in faces] == [True, True]
    assert CROP not in faces[0]
    # Neither a recognition nor the identity's faces hand the crop out.
    seen = recognize(api, gallery, images.portrait())
    assert seen["faces"][0]["identity"]["id"] == ada
    assert '"crop"' not in json.dumps(seen) and '"crop"' not in json.dumps(faces)

    face = api.delete(f"/v1/collections/{gallery}/identities/{ada}/faces/{faces[0]['face_id']}")
    assert face.status_code == 200, face.text
    assert face.json()["deleted_crops"] == 1 and face.json()["remaining_faces"] == 0

    # Turned off: a body naming only keep_crops leaves the other settings alone.
    api.patch(f"/v1/collections/{gallery}", json={"threshold": 0.4})
    changed = api.patch(f"/v1/collections/{gallery}", json={"keep_crops": False})
    assert changed.status_code == 200, changed.text
    assert changed.json()["keep_crops"] is False and changed.json()["threshold"] == 0.4
    assert api.get(f"/v1/collections/{gallery}").json()["keep_crops"] is False
    bo = new_identity(api, gallery, "Bo")
    enroll(api, gallery, bo, images.variant(images.portrait(), scale=0.8))
    assert [f["has_crop"] for f in faces_of(api, gallery, bo)] == [False]
    # Faces enrolled before keep their crop.
    assert [f["has_crop"] for f in faces_of(api, gallery, ada)] == [True]
    refused = api.patch(f"/v1/collections/{gallery}", json={"keep_crops": "no"})
    assert refused.status_code == 422, refused.text

    bare = faces_of(api, gallery, bo)[0]["face_id"]
    bare_face = api.delete(f"/v1/collections/{gallery}/identities/{bo}/faces/{bare}")
    assert bare_face.json()["deleted_crops"] == 0 and bare_face.json()["deleted_faces"] == 1

    # Back on (null is the default); an identity's erasure counts its crops.
    api.patch(f"/v1/collections/{gallery}", json={"keep_crops": None})
    enroll(api, gallery, bo, images.variant(images.portrait(), scale=0.7))
    erased = api.delete(f"/v1/collections/{gallery}/identities/{bo}")
    assert erased.status_code == 200, erased.text
    assert erased.json()["deleted_faces"] == 1 and erased.json()["deleted_crops"] == 1

    gone = api.delete(f"/v1/collections/{gallery}")
    assert gone.status_code == 200, gone.text
    assert gone.json()["deleted_faces"] == 1 and gone.json()["deleted_crops"] == 1
    assert gone.json()["remaining_faces"] == 0


def test_erasing_a_tenant_counts_its_crops(stack: Stack) -> None:
    tenant = unique("crops-tenant")
    key = str(cli(stack, "create", "--tenant", tenant, "--scopes", "read,write,admin")["key"])
    with client_for(stack, key) as api:
        yao = new_identity(api, "staff", "Yao")
        enroll(api, "staff", yao, images.portrait())
        other = new_identity(api, "other", "Yao")
        api.patch("/v1/collections/other", json={"keep_crops": False})
        enroll(api, "other", other, images.portrait())
        erased = api.delete("/v1/tenant")
        assert erased.status_code == 200, erased.text
        body = erased.json()
        assert body["deleted_faces"] == 2 and body["deleted_crops"] == 1
        assert body["remaining_faces"] == 0
