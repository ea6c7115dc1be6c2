"""The index stage: the last stage of the job kinds that need the index (recognise, enrol,
verify against an identity, a batch image). The indexer's calls that carry no image
(counts, erasure, people) are in ``calls``."""

import base64
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import redis
from facerec_common.codec import unpack_vectors
from facerec_common.errors import BatchCancelled, IdentityNotFound, InvalidInput
from facerec_common.identities import IdentityRecord, IdentityState, text
from facerec_common.messages import (
    ImageRef,
    JobKind,
    PipelineMessage,
    Refusal,
)
from facerec_common.metrics import INDEX_SEARCH, timed
from facerec_common.migrations import gallery_models
from facerec_common.names import batch_key, collection_settings_key, identity_key
from facerec_common.results import (
    BatchFace,
    BatchImageResult,
    Candidate,
    DuplicateImage,
    EnrolledFace,
    EnrolResult,
    Face,
    IdentityRef,
    ImageSize,
    JobResult,
    NamedImage,
    RecognizedFace,
    RecognizeResult,
    RefusedImage,
    SearchResult,
    VerifyIdentityResult,
)
from facerec_common.scores import Scoring, message_scoring

from facerec_indexer.clustering import Vector
from facerec_indexer.index import FaceIndex, FacePoint, Hit, Scope
from facerec_indexer.index.base import CROP, ENROLLED, UNASSIGNED
from facerec_indexer.migration import Migrations
from facerec_indexer.people import People, thumbnail_text

# Face ids are uuid5 of the job and image, so a redelivered task overwrites its own points.
FACE_NAMESPACE = uuid.UUID("6f1d0c4e-8a53-4bb4-9a55-1f0e7c3a2b91")


def face_id(job_id: str, image_index: int) -> str:
    return str(uuid.uuid5(FACE_NAMESPACE, f"{job_id}:{image_index}"))


def enrolled_face_id(tenant: str, collection: str, identity: str, sha256: str) -> str:
    """An enrolled face is named by its identity and its image's content: the same photo
    enrolled twice (even by two requests at once) lands on one point, never two."""
    return str(uuid.uuid5(FACE_NAMESPACE, f"{tenant}:{collection}:{identity}:{sha256}"))


# What an enrolment refusal means, and what to do about it.
REFUSAL_DETAILS = {
    Refusal.NO_FACE: "no face was found in this image",
    Refusal.SEVERAL_FACES: "this image has several faces; crop it to one, or pass "
    "largest_face=true to enrol the largest face (CLI: --largest-face)",
    Refusal.TOO_SMALL: "the face is too small to enrol; use a larger photo of it",
    Refusal.BLURRED: "the face is blurred; use a sharper photo of it",
    Refusal.TOO_DARK: "the face is too dark; use a better lit photo of it",
    Refusal.TOO_BRIGHT: "the face is overexposed; use a photo with less light on it",
    Refusal.PROFILE: "the face is turned away from the camera; use a photo facing it",
    Refusal.LOW_SCORE: "the detector is unsure this is a face; use a clearer photo of it",
}
QUALITY_HINT = " (quality_filter=none enrols it anyway)"


def refused_image(ref: ImageRef, refusal: Refusal) -> RefusedImage:
    """Why an image was not enrolled; a face under the quality bar names every reason."""
    detail = REFUSAL_DETAILS[refusal]
    if ref.quality_issues:
        others = [issue.value for issue in ref.quality_issues[1:]]
        detail += (f"; also {', '.join(others)}" if others else "") + QUALITY_HINT
    return RefusedImage(
        image=ref.name,
        reason=refusal,
        detail=detail,
        quality_issues=ref.quality_issues,
        quality=ref.quality,
    )


def batch_face_id(tenant: str, collection: str, sha256: str, face_index: int) -> str:
    """A batch face is named by its image's content, not its job, so the same photo sent
    again (another run of an import) lands on the same points instead of new ones."""
    return str(uuid.uuid5(FACE_NAMESPACE, f"{tenant}:{collection}:{sha256}:{face_index}"))


class IndexStage:
    def __init__(
        self,
        index: FaceIndex,
        client: redis.Redis,
        faces_per_candidate: int,
        max_top_k: int,
        people: People,
        migrations: Migrations,
    ) -> None:
        self._index = index
        self._people = people
        self._migrations = migrations
        self._redis = client
        self._faces_per_candidate = faces_per_candidate
        self._max_top_k = max_top_k

    def run(self, msg: PipelineMessage) -> JobResult:
        if msg.kind is JobKind.RECOGNIZE:
            return self._recognize(msg)
        if msg.kind is JobKind.ENROLL:
            return self._enroll(msg)
        if msg.kind is JobKind.VERIFY_IDENTITY:
            return self._verify_identity(msg)
        if msg.kind is JobKind.BATCH:
            return self._batch(msg)
        if msg.kind is JobKind.SEARCH:
            return self._search(msg)
        if msg.kind is JobKind.MIGRATE:
            return self._migrations.store(msg)
        raise InvalidInput(f"the index stage does not handle {msg.kind} jobs")

    def _records(self, tenant: str, collection: str, ids: list[str]) -> dict[str, IdentityRecord]:
        with self._redis.pipeline(transaction=False) as pipe:
            for identity in ids:
                pipe.hgetall(identity_key(tenant, collection, identity))
            found = pipe.execute()
        return {
            identity: IdentityRecord.from_hash(fields)
            for identity, fields in zip(ids, found, strict=True)
            if fields
        }

    def _threshold(self, msg: PipelineMessage, collection: str) -> tuple[float, Scoring]:
        """The threshold of this job in this gallery, and how the model scores."""
        scoring = message_scoring(msg)
        stored = self._redis.hget(collection_settings_key(msg.tenant, collection), "threshold")
        gallery = float(stored) if stored else None
        return scoring.threshold(msg.params, gallery), scoring

    def _recognize(self, msg: PipelineMessage) -> RecognizeResult:
        collection = required(msg.params.collection, "collection")
        threshold, scoring = self._threshold(msg, collection)
        top_k = max(1, min(msg.params.top_k, self._max_top_k))
        vectors = unpack_vectors(msg.vectors, msg.dim) if msg.dim else None
        hits: list[list[Hit]] = []
        if vectors is not None and msg.model is not None:
            with timed(INDEX_SEARCH):
                hits = self._index.search(
                    msg.model,
                    vectors,
                    Scope(msg.tenant, collection, pool=ENROLLED),
                    limit=top_k * self._faces_per_candidate,
                )
        best = [_best_per_identity(face_hits, top_k) for face_hits in hits]
        names = self._records(
            msg.tenant, collection, sorted({h.identity_id for face in best for h in face})
        )
        matches = iter(best)
        faces = []
        for face in msg.faces:
            # Faces too small to embed have no vector, so they take no match from the list.
            hits_of_face = next(matches) if face.embeddable else []
            match = _match(hits_of_face, names, scoring, threshold)
            faces.append(
                RecognizedFace(
                    **Face.of(face).model_dump(),
                    identity=match.identity,
                    similarity=match.similarity,
                    confidence=match.confidence,
                    candidates=match.candidates,
                )
            )
        image = msg.images[0]
        return RecognizeResult(
            collection=collection,
            model=msg.model,
            threshold=threshold,
            image=ImageSize(width=image.width, height=image.height, detection=image.detection),
            faces=faces,
        )

    def _search(self, msg: PipelineMessage) -> SearchResult:
        """A supplied vector (checked and tagged by the embedder) against the gallery's
        enrolled faces, as recognition searches a face."""
        collection = required(msg.params.collection, "collection")
        tag = msg.params.embedding_model
        if tag is None or msg.model is None or not msg.dim:
            raise InvalidInput("a search needs a vector checked by the embed stage")
        threshold, scoring = self._threshold(msg, collection)
        top_k = max(1, min(msg.params.top_k, self._max_top_k))
        with timed(INDEX_SEARCH):
            [hits] = self._index.search(
                msg.model,
                unpack_vectors(msg.vectors, msg.dim)[:1],
                Scope(msg.tenant, collection, pool=ENROLLED),
                limit=top_k * self._faces_per_candidate,
            )
        best = _best_per_identity(hits, top_k)
        names = self._records(msg.tenant, collection, sorted({h.identity_id for h in best}))
        match = _match(best, names, scoring, threshold)
        return SearchResult(
            collection=collection,
            model=tag,
            threshold=threshold,
            identity=match.identity,
            similarity=match.similarity,
            confidence=match.confidence,
            candidates=match.candidates,
        )

    def _batch(self, msg: PipelineMessage) -> BatchImageResult:
        """Recognise the image; keep each face that matched nobody as an unassigned face of
        the gallery, and group the new ones into people."""
        collection = required(msg.params.collection, "collection")
        batch_id = required(msg.params.batch_id, "batch_id")
        status = self._redis.hget(batch_key(batch_id), "status")
        if status is None or text(status) == "cancelled":
            # Nothing of an image whose batch was cancelled or deleted is stored.
            raise BatchCancelled(f"batch {batch_id} was cancelled before this image was reached")
        recognized = self._recognize(msg)
        image = msg.images[0]
        content = image.sha256 or msg.job_id
        vectors: Iterator[Vector] = iter(unpack_vectors(msg.vectors, msg.dim) if msg.dim else [])
        thumbnails = iter(msg.thumbnails)
        # Empty when the gallery keeps no crops.
        crops = iter(msg.kept_crops)
        shadows = shadow_vectors(msg)
        now = time.time()
        points = []
        shadow_points = []
        faces = []
        for index, (face, seen) in enumerate(zip(msg.faces, recognized.faces, strict=True)):
            point_id = batch_face_id(msg.tenant, collection, content, index)
            # Too small faces have no vector; faces of a job without a model match nobody
            # but have nothing to keep either.
            keep = face.embeddable and seen.identity is None and msg.model is not None
            if face.embeddable:
                vector, jpeg, crop = next(vectors), next(thumbnails, b""), next(crops, b"")
                shadow = next(shadows)
                if keep:
                    point = FacePoint(
                        id=point_id,
                        vector=vector,
                        tenant=msg.tenant,
                        collection=collection,
                        identity_id="",
                        extra={
                            "image": image.name,
                            "bbox": seen.bbox,
                            "batch_id": msg.params.batch_id,
                            "thumbnail": thumbnail_text(jpeg),
                            "created_at": now,
                            "model": msg.model,
                            **kept_crop(crop),
                        },
                        pool=UNASSIGNED,
                    )
                    points.append(point)
                    shadow_points += shadow_copy(point, shadow, msg)
            faces.append(BatchFace(**seen.model_dump(), face_id=point_id, unassigned=keep))
        if points and msg.model is not None:
            self._store(msg, points, shadow_points)
            self._people.group(
                msg.model, msg.tenant, collection, [(p.id, p.vector) for p in points]
            )
        return BatchImageResult(
            collection=recognized.collection,
            model=recognized.model,
            threshold=recognized.threshold,
            image=NamedImage(
                width=image.width, height=image.height, name=image.name, detection=image.detection
            ),
            faces=faces,
        )

    def batch_done(self, tenant: str, collection: str) -> None:
        """A batch finished: faces still in no person get another chance."""
        self._people.regroup(tenant, collection)

    def _enroll(self, msg: PipelineMessage) -> EnrolResult:
        collection = required(msg.params.collection, "collection")
        identity = required(msg.params.identity_id, "identity_id")
        record = self._records(msg.tenant, collection, [identity]).get(identity)
        if record is None or record.state is not IdentityState.ACTIVE:
            raise IdentityNotFound(f"identity {identity} does not exist in {collection!r}")
        faces = msg.embedded_faces()
        refs = {ref.index: ref for ref in msg.images}
        # Images this identity has already (by content), and where: a repeat is reported,
        # not stored a second time.
        known = {
            str(r.payload["sha256"]): r.id
            for r in self._index.scroll(Scope(msg.tenant, collection, identity))
            if r.payload.get("sha256")
        }
        thumbnails = iter(msg.thumbnails)
        # Empty when the gallery keeps no crops.
        crops = iter(msg.kept_crops)
        vectors: Iterator[Vector] = iter(unpack_vectors(msg.vectors, msg.dim) if msg.dim else [])
        shadows = shadow_vectors(msg)
        now = time.time()
        points: list[FacePoint] = []
        shadow_points: list[FacePoint] = []
        stored: list[EnrolledFace] = []
        duplicates: list[DuplicateImage] = []
        for face in faces:
            vector, jpeg, crop = next(vectors), next(thumbnails, b""), next(crops, b"")
            shadow = next(shadows)
            ref = refs[face.image]
            if ref.sha256 and ref.sha256 in known:
                duplicates.append(
                    DuplicateImage(image=ref.name, sha256=ref.sha256, face_id=known[ref.sha256])
                )
                continue
            point_id = (
                enrolled_face_id(msg.tenant, collection, identity, ref.sha256)
                if ref.sha256
                else face_id(msg.job_id, face.image)
            )
            if ref.sha256:
                known[ref.sha256] = point_id
            out = Face.of(face)
            point = FacePoint(
                id=point_id,
                vector=vector,
                tenant=msg.tenant,
                collection=collection,
                identity_id=identity,
                extra={
                    "image": ref.name,
                    "sha256": ref.sha256 or "",
                    "bbox": out.bbox,
                    "thumbnail": thumbnail_text(jpeg),
                    "created_at": now,
                    "model": msg.model,
                    **kept_crop(crop),
                },
            )
            points.append(point)
            shadow_points += shadow_copy(point, shadow, msg)
            stored.append(EnrolledFace(**out.model_dump(), face_id=point_id, image=ref.name))
        if points and msg.model is not None:
            self._store(msg, points, shadow_points)
        return EnrolResult(
            identity_id=identity,
            identity_name=record.name,
            faces=stored,
            duplicates=duplicates,
            refused=[
                refused_image(ref, ref.refused) for ref in msg.images if ref.refused is not None
            ],
        )

    def _store(
        self, msg: PipelineMessage, points: list[FacePoint], shadow_points: list[FacePoint]
    ) -> None:
        """New faces into the serving index and, while the gallery migrates, the same
        faces by the other model into the other index (unless that index was dropped
        while this job waited)."""
        if msg.model is not None:
            self._index.upsert(msg.model, msg.dim, points)
        collection = msg.params.collection
        if not shadow_points or not msg.shadow_model or not collection:
            return
        if gallery_models(self._redis, msg.tenant, collection).shadow_model == msg.shadow_model:
            self._index.upsert(msg.shadow_model, msg.shadow_dim, shadow_points)

    def _verify_identity(self, msg: PipelineMessage) -> VerifyIdentityResult:
        collection = required(msg.params.collection, "collection")
        identity = required(msg.params.identity_id, "identity_id")
        record = self._records(msg.tenant, collection, [identity]).get(identity)
        if record is None or record.state is not IdentityState.ACTIVE:
            raise IdentityNotFound(f"identity {identity} does not exist in {collection!r}")
        threshold, scoring = self._threshold(msg, collection)
        hits: list[Hit] = []
        if msg.model is not None and msg.dim:
            vectors = unpack_vectors(msg.vectors, msg.dim)
            hits = self._index.search(
                msg.model, vectors, Scope(msg.tenant, collection, identity), limit=1
            )[0]
        scores = scoring.scored(hits[0].score) if hits else None
        return VerifyIdentityResult(
            identity=IdentityRef(id=record.id, name=record.name),
            same=bool(hits) and hits[0].score >= threshold,
            similarity=scores.similarity if scores else None,
            confidence=scores.confidence if scores else None,
            threshold=threshold,
            model=msg.model,
            face=Face.of(msg.faces[0]),
        )


def kept_crop(crop: bytes) -> dict[str, str]:
    """The payload field of a kept crop: the aligned crop lives and dies with its point;
    absent, not empty, where none is kept (erasure counts the points with one)."""
    return {CROP: base64.b64encode(crop).decode("ascii")} if crop else {}


def shadow_vectors(msg: PipelineMessage) -> Iterator[Vector | None]:
    """Each crop's vector by the other model of a migrating gallery; None without one."""
    if msg.shadow_model and msg.shadow_dim:
        yield from unpack_vectors(msg.shadow_vectors, msg.shadow_dim)
    while True:
        yield None


def shadow_copy(point: FacePoint, vector: Vector | None, msg: PipelineMessage) -> list[FacePoint]:
    """The point as the other index of a migrating gallery stores it (none without one)."""
    if vector is None:
        return []
    return [replace(point, vector=vector, extra={**point.extra, "model": msg.shadow_model})]


def required(value: str | None, name: str) -> str:
    """A message field its job or call cannot go without."""
    if not value:
        raise InvalidInput(f"{name} is required")
    return value


def _candidate(hit: Hit, name: str, scoring: Scoring) -> Candidate:
    scores = scoring.scored(hit.score)
    return Candidate(
        id=hit.identity_id, name=name, similarity=scores.similarity, confidence=scores.confidence
    )


@dataclass(frozen=True)
class Match:
    """One face's (or one supplied vector's) answer: its candidates, best first, and the
    best one as its identity when it reaches the threshold."""

    candidates: list[Candidate]
    identity: IdentityRef | None
    similarity: float | None
    confidence: float | None


def _match(
    best: list[Hit], names: dict[str, IdentityRecord], scoring: Scoring, threshold: float
) -> Match:
    """``best``: one hit per identity, best first (``_best_per_identity``)."""
    candidates = [
        _candidate(h, names[h.identity_id].name, scoring) for h in best if h.identity_id in names
    ]
    top = candidates[0] if candidates else None
    if top is None:
        return Match(candidates, None, None, None)
    known = best[0].score >= threshold
    identity = IdentityRef(id=top.id, name=top.name) if known else None
    return Match(candidates, identity, top.similarity, top.confidence)


def _best_per_identity(hits: list[Hit], top_k: int) -> list[Hit]:
    """Hits come best first; keep each identity's best face, then the top k identities."""
    seen: dict[str, Hit] = {}
    for hit in hits:
        seen.setdefault(hit.identity_id, hit)
    return list(seen.values())[:top_k]
