"""Each pipeline stage on its own, with its parts handed in: the real models, a real
embedded index in a temporary folder and a real Redis, but no workers, no queues and no
gateway. A change to a stage's logic is tested here in seconds; the end-to-end tests still
run the whole pipeline."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import redis
from facerec_common.batches import BatchLedger
from facerec_common.codec import pack_vectors, unpack_crops, unpack_vectors
from facerec_common.errors import IdentityNotFound, InvalidInput, NoFaceFound, StageFailed
from facerec_common.identities import IdentityRecord
from facerec_common.jobs import JobWriter
from facerec_common.kinds import DETECT, EMBED, INDEX, ROUTES, route
from facerec_common.messages import (
    DetectedFace,
    ImageRef,
    IndexCall,
    IndexCallOp,
    JobKind,
    JobParams,
    PipelineMessage,
)
from facerec_common.names import batch_key, identity_key
from facerec_common.results import (
    BatchImageResult,
    DetectResult,
    EnrolResult,
    NamedImage,
    RecognizeResult,
    RepresentResult,
    VerifyResult,
)
from facerec_common.scores import Scoring
from facerec_common.settings import ServiceSettings
from facerec_common.worker import StageOutcome, batch_image, stage_app
from facerec_detector.stage import DetectStage
from facerec_embedder.stage import EmbedStage
from facerec_indexer.calls import IndexCalls
from facerec_indexer.clustering import ClusterParams
from facerec_indexer.index.edge import EdgeIndex
from facerec_indexer.migration import Migrations
from facerec_indexer.people import People
from facerec_indexer.stage import IndexStage
from images import group_photo, no_face, portrait, variant

TENANT = "stages"
GALLERY = "g"


@pytest.fixture
def index_stage(tmp_path: Path, client: redis.Redis) -> Iterator[IndexStage]:
    index = EdgeIndex(tmp_path / "index")
    try:
        migrations = Migrations(index, client, print)
        yield IndexStage(index, client, 3, 20, People(index, ClusterParams()), migrations)
    finally:
        index.close()


def message(kind: JobKind, *images: bytes, **params: object) -> tuple[PipelineMessage, list[bytes]]:
    msg = PipelineMessage(
        job_id=f"job-{kind}-{len(images)}",
        kind=kind,
        tenant=TENANT,
        params=JobParams.model_validate(params),
        images=[ImageRef(index=i, name=f"image{i}.jpg") for i in range(len(images))],
    )
    return msg, list(images)


def run_detect(stage: DetectStage, msg: PipelineMessage, images: list[bytes]) -> PipelineMessage:
    outcome = stage.run(msg, lambda index: images[index])
    assert outcome.result is None and outcome.forward is not None
    return outcome.forward


def test_every_job_kind_starts_at_detect_and_ends_at_its_last_stage() -> None:
    assert set(ROUTES) == set(JobKind)
    for kind, way in ROUTES.items():
        # A search brings its own vector and a migration share its kept crops: neither
        # has an image to detect in.
        no_image = kind in (JobKind.SEARCH, JobKind.MIGRATE)
        assert way.stages[0] == (EMBED if no_image else DETECT), kind
        assert way.finishes(way.stages[-1]) and way.after(way.stages[-1]) is None
    assert route(JobKind.RECOGNIZE).after(DETECT) == EMBED
    assert route(JobKind.RECOGNIZE).after(EMBED) == INDEX
    assert route(JobKind.VERIFY).finishes(EMBED)


def test_detect_ends_a_detect_job_and_forwards_the_others(detect: DetectStage) -> None:
    msg, images = message(JobKind.DETECT, group_photo())
    outcome = detect.run(msg, lambda index: images[index])
    assert isinstance(outcome.result, DetectResult) and outcome.forward is None
    assert len(outcome.result.faces) == 6
    assert outcome.result.image.width > 0

    msg, images = message(JobKind.RECOGNIZE, group_photo(), collection=GALLERY)
    forward = run_detect(detect, msg, images)
    assert len(unpack_crops(forward.crops)) == len(forward.embedded_faces()) == 6


def test_detect_refuses_per_kind(detect: DetectStage) -> None:
    # Verify needs a face in each image: the job fails.
    msg, images = message(JobKind.VERIFY, portrait(), no_face())
    with pytest.raises(NoFaceFound):
        detect.run(msg, lambda index: images[index])
    # Enrolment reports the image and goes on with the others.
    msg, images = message(JobKind.ENROLL, portrait(), no_face(), group_photo())
    forward = run_detect(detect, msg, images)
    assert [ref.refused for ref in forward.images] == [None, "no_face", "several_faces"]
    assert len(forward.faces) == 1
    # The largest face of a group photo, where the request allows it.
    msg, images = message(JobKind.ENROLL, group_photo(), largest_face=True)
    assert len(run_detect(detect, msg, images).faces) == 1


def test_embed_ends_a_verify_job_with_the_models_threshold(
    detect: DetectStage, embed: EmbedStage
) -> None:
    msg, images = message(JobKind.VERIFY, portrait(), variant(portrait(), flip=True))
    outcome = embed.run(run_detect(detect, msg, images))
    assert isinstance(outcome.result, VerifyResult) and outcome.forward is None
    assert outcome.result.same and outcome.result.similarity > outcome.result.threshold
    # A request's threshold wins over the model's.
    msg, images = message(JobKind.VERIFY, portrait(), portrait(), threshold=0.9999)
    outcome = embed.run(run_detect(detect, msg, images))
    assert isinstance(outcome.result, VerifyResult) and outcome.result.threshold == 0.9999


def test_embed_forwards_vectors_thumbnails_and_its_scoring(
    detect: DetectStage, embed: EmbedStage
) -> None:
    msg, images = message(JobKind.ENROLL, portrait())
    forward = embed.run(run_detect(detect, msg, images)).forward
    assert forward is not None and forward.model is not None
    assert unpack_vectors(forward.vectors, forward.dim).shape == (1, forward.dim)
    assert len(forward.thumbnails) == 1 and forward.crops == b""
    assert forward.default_threshold is not None
    # Recognition keeps no thumbnails: nobody reviews them.
    msg, images = message(JobKind.RECOGNIZE, portrait(), collection=GALLERY)
    recognized = embed.run(run_detect(detect, msg, images)).forward
    assert recognized is not None and recognized.thumbnails == []


def test_embed_represents_every_face_and_checks_a_supplied_vectors_model(
    detect: DetectStage, embed: EmbedStage
) -> None:
    msg, images = message(JobKind.REPRESENT, group_photo())
    outcome = embed.run(run_detect(detect, msg, images))
    assert isinstance(outcome.result, RepresentResult) and outcome.forward is None
    assert outcome.result.model == embed.tag and len(outcome.result.faces) == 6
    vector = np.array(outcome.result.faces[0].embedding, dtype=np.float32)
    assert vector.shape == (embed.tag.dim,)
    # A search's vector goes on to the index with the model's scoring, if its tag fits.
    other = embed.tag.model_copy(update={"model": "w600k_r50"})
    for tag, fits in ((embed.tag, True), (other, False)):
        search = PipelineMessage(
            job_id="job-search",
            kind=JobKind.SEARCH,
            tenant=TENANT,
            params=JobParams(collection=GALLERY, embedding_model=tag),
            images=[],
            dim=len(vector),
            vectors=pack_vectors(vector[None, :]),
        )
        if not fits:
            with pytest.raises(InvalidInput, match="another model"):
                embed.run(search)
            continue
        forward = embed.run(search).forward
        assert forward is not None and forward.model == embed.tag.model
        assert forward.default_threshold is not None


def add_identity(client: redis.Redis, identity: str, name: str) -> None:
    record = IdentityRecord(id=identity, name=name, created_at=1.0)
    client.hset(identity_key(TENANT, GALLERY, identity), mapping=record.to_hash())


SCORING = Scoring(0.3, None)


def vectors_message(
    kind: JobKind,
    vectors: npt.NDArray[np.float64],
    scoring: Scoring | None = SCORING,
    **params: object,
) -> PipelineMessage:
    count = len(vectors)
    msg = PipelineMessage(
        job_id=f"job-{kind}",
        kind=kind,
        tenant=TENANT,
        params=JobParams.model_validate({"collection": GALLERY, **params}),
        images=[
            ImageRef(index=i, name=f"image{i}.jpg", width=100, height=100, sha256=f"{i:064x}")
            for i in range(count)
        ],
        faces=[
            DetectedFace(image=i, bbox=[0, 0, 50, 50], landmarks=[[1, 1]] * 5, det_score=0.9)
            for i in range(count)
        ],
        model="unit-model",
        dim=vectors.shape[1],
        vectors=pack_vectors(vectors.astype(np.float32)),
    )
    if scoring is not None:
        msg.default_threshold, msg.calibration = scoring.message_fields()
    return msg


def unit(axis: int, dim: int = 8) -> npt.NDArray[np.float64]:
    """A unit vector along one axis: two of them are as unlike as faces can be."""
    vector = np.zeros(dim)
    vector[axis] = 1.0
    return vector


def test_index_enrols_then_recognises_by_the_given_threshold(
    index_stage: IndexStage, client: redis.Redis
) -> None:
    with pytest.raises(IdentityNotFound):
        index_stage.run(vectors_message(JobKind.ENROLL, np.stack([unit(1)]), identity_id="ada"))
    add_identity(client, "ada", "Ada")
    enrolled = index_stage.run(
        vectors_message(JobKind.ENROLL, np.stack([unit(1)]), identity_id="ada")
    )
    assert isinstance(enrolled, EnrolResult) and len(enrolled.faces) == 1
    # The same image again is a duplicate, not a second face.
    again = index_stage.run(vectors_message(JobKind.ENROLL, np.stack([unit(1)]), identity_id="ada"))
    assert isinstance(again, EnrolResult) and not again.faces and len(again.duplicates) == 1

    result = index_stage.run(vectors_message(JobKind.RECOGNIZE, np.stack([unit(1), unit(2)])))
    assert isinstance(result, RecognizeResult) and result.threshold == 0.3
    known, stranger = result.faces
    assert known.identity is not None and known.identity.name == "Ada"
    assert stranger.identity is None
    strict = index_stage.run(
        vectors_message(JobKind.RECOGNIZE, np.stack([unit(1)]), threshold=1.01)
    )
    assert isinstance(strict, RecognizeResult) and strict.faces[0].identity is None


def test_index_keeps_a_batchs_unmatched_faces(index_stage: IndexStage, client: redis.Redis) -> None:
    client.hset(batch_key("b1"), mapping={"status": "open"})
    result = index_stage.run(
        vectors_message(JobKind.BATCH, np.stack([unit(3), unit(4)]), batch_id="b1")
    )
    assert isinstance(result, BatchImageResult)
    assert result.image.name == "image0.jpg"
    assert [face.unassigned for face in result.faces] == [True, True]
    assert len({face.face_id for face in result.faces}) == 2


def test_index_refuses_a_message_that_skipped_the_embedder(index_stage: IndexStage) -> None:
    with pytest.raises(StageFailed, match="embed"):
        index_stage.run(vectors_message(JobKind.RECOGNIZE, np.stack([unit(1)]), scoring=None))


def test_the_indexers_calls_count_and_erase_what_the_stage_stored(
    tmp_path: Path, client: redis.Redis
) -> None:
    index = EdgeIndex(tmp_path / "index")
    try:
        people, migrations = People(index, ClusterParams()), Migrations(index, client, print)
        stage = IndexStage(index, client, 3, 20, people, migrations)
        calls = IndexCalls(index, people, migrations)
        add_identity(client, "bo", "Bo")
        stage.run(vectors_message(JobKind.ENROLL, np.stack([unit(5), unit(6)]), identity_id="bo"))

        def call(op: IndexCallOp, **fields: str) -> dict[str, object]:
            msg = IndexCall(job_id="call", op=op, tenant=TENANT, collection=GALLERY, **fields)
            return calls.answer(msg)

        assert call(IndexCallOp.COUNT, identity_id="bo") == {"count": 2}
        faces = call(IndexCallOp.IDENTITY_FACES, identity_id="bo")["faces"]
        assert isinstance(faces, list) and len(faces) == 2
        # Messages made here carry no kept crops: none to count (see test_crops.py).
        erased = call(IndexCallOp.DELETE_IDENTITY, identity_id="bo")
        assert erased == {"deleted": 2, "deleted_crops": 0, "remaining": 0}
        assert call(IndexCallOp.COUNT, identity_id="bo") == {"count": 0}
    finally:
        index.close()


def test_a_batch_image_ended_but_not_counted_is_counted_by_its_redelivery(
    redis_url: str, client: redis.Redis
) -> None:
    """A worker killed between ending a batch image's job and counting it into its batch:
    the redelivered task does not run again (the job has ended), but counts the image, and
    a later delivery counts nothing twice."""
    batch_id = f"batch-{uuid.uuid4().hex[:8]}"
    result = BatchImageResult(
        collection=GALLERY,
        model="m",
        threshold=0.3,
        image=NamedImage(name="image0.jpg", width=10, height=10),
        faces=[],
    )
    runs: list[str] = []

    def run(msg: PipelineMessage, _jobs: JobWriter) -> StageOutcome:
        runs.append(msg.job_id)
        return StageOutcome(result=result)

    app, _guard = stage_app("test", ServiceSettings(redis_url=redis_url), INDEX, run)
    msg, _ = message(JobKind.BATCH, b"", collection=GALLERY, batch_id=batch_id)
    msg.job_id = f"job-{uuid.uuid4().hex[:8]}"
    client.hset(batch_key(batch_id), mapping={"status": "closed", "submitted": 1})
    # The dead worker ended the job, and died before counting it.
    JobWriter(client, 60).finish(msg.job_id, result, 0)

    app.tasks[INDEX.task].apply(args=[msg.to_task()])
    assert runs == []  # not run again
    batch = client.hgetall(batch_key(batch_id))
    assert batch[b"status"] == b"done" and batch[b"done"] == b"1", batch

    app.tasks[INDEX.task].apply(args=[msg.to_task()])
    assert client.hget(batch_key(batch_id), "done") == b"1"
    image = batch_image(msg)
    assert image is not None and not BatchLedger(client).record(image, msg.job_id, result)
