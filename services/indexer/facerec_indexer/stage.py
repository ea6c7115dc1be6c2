"""The index stage: match a recognise job's vectors against a gallery, or store an enrol
job's vectors under its identity; and the admin operations (count, erasure)."""

import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis
from facerec_common.codec import unpack_vectors
from facerec_common.errors import IdentityNotFound, InvalidInput
from facerec_common.identities import IdentityRecord, IdentityState
from facerec_common.messages import AdminMessage, AdminOp, JobKind, PipelineMessage, face_json
from facerec_common.metrics import INDEX_SEARCH, timed
from facerec_common.names import collection_settings_key, identity_key
from facerec_common.scores import Calibration, resolve_threshold, scored

from facerec_indexer.clustering import Vector
from facerec_indexer.index import FaceIndex, FacePoint, Hit, Scope
from facerec_indexer.index.base import ENROLLED, UNASSIGNED
from facerec_indexer.people import People, thumbnail_text

# Face ids are uuid5 of the job and image, so a redelivered task overwrites its own points.
FACE_NAMESPACE = uuid.UUID("6f1d0c4e-8a53-4bb4-9a55-1f0e7c3a2b91")


def face_id(job_id: str, image_index: int) -> str:
    return str(uuid.uuid5(FACE_NAMESPACE, f"{job_id}:{image_index}"))


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
    ) -> None:
        self._index = index
        self._people = people
        self._redis = client
        self._faces_per_candidate = faces_per_candidate
        self._max_top_k = max_top_k

    def run(self, msg: PipelineMessage) -> dict[str, Any]:
        if msg.kind is JobKind.RECOGNIZE:
            return self._recognize(msg)
        if msg.kind is JobKind.ENROLL:
            return self._enroll(msg)
        if msg.kind is JobKind.VERIFY_IDENTITY:
            return self._verify_identity(msg)
        if msg.kind is JobKind.BATCH:
            return self._batch(msg)
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

    def _threshold(self, msg: PipelineMessage, collection: str) -> tuple[float, Calibration | None]:
        calibration = Calibration(*msg.calibration) if msg.calibration else None
        stored = self._redis.hget(collection_settings_key(msg.tenant, collection), "threshold")
        gallery = float(stored) if stored else None
        default = msg.default_threshold if msg.default_threshold is not None else 1.0
        return resolve_threshold(msg.params, gallery, default, calibration), calibration

    def _recognize(self, msg: PipelineMessage) -> dict[str, Any]:
        collection = _required(msg.params.collection, "collection")
        threshold, calibration = self._threshold(msg, collection)
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
            hits_of_face = [] if face.too_small else next(matches)
            candidates = [
                {
                    "id": h.identity_id,
                    "name": names[h.identity_id].name,
                    **scored(h.score, calibration),
                }
                for h in hits_of_face
                if h.identity_id in names
            ]
            top = hits_of_face[0] if candidates else None
            known = top is not None and threshold is not None and top.score >= threshold
            faces.append(
                {
                    **face_json(face),
                    "identity": {"id": candidates[0]["id"], "name": candidates[0]["name"]}
                    if known
                    else None,
                    "similarity": candidates[0]["similarity"] if candidates else None,
                    "confidence": candidates[0]["confidence"] if candidates else None,
                    "candidates": candidates,
                }
            )
        image = msg.images[0]
        return {
            "collection": collection,
            "model": msg.model,
            "threshold": threshold,
            "image": {"width": image.width, "height": image.height},
            "faces": faces,
        }

    def _batch(self, msg: PipelineMessage) -> dict[str, Any]:
        """Recognise the image; keep each face that matched nobody as an unassigned face of
        the gallery, and group the new ones into people."""
        result = self._recognize(msg)
        collection = _required(msg.params.collection, "collection")
        image = msg.images[0]
        content = image.sha256 or msg.job_id
        vectors: Iterator[Vector] = iter(unpack_vectors(msg.vectors, msg.dim) if msg.dim else [])
        thumbnails = iter(msg.thumbnails)
        now = time.time()
        points = []
        for index, (face, out) in enumerate(zip(msg.faces, result["faces"], strict=True)):
            out["face_id"] = batch_face_id(msg.tenant, collection, content, index)
            out["unassigned"] = False
            if face.too_small:
                continue
            vector, jpeg = next(vectors), next(thumbnails, b"")
            if out["identity"] is None and msg.model is not None:
                out["unassigned"] = True
                points.append(
                    FacePoint(
                        id=out["face_id"],
                        vector=vector,
                        tenant=msg.tenant,
                        collection=collection,
                        identity_id="",
                        extra={
                            "image": image.name,
                            "bbox": out["bbox"],
                            "batch_id": msg.params.batch_id,
                            "thumbnail": thumbnail_text(jpeg),
                            "created_at": now,
                            "model": msg.model,
                        },
                        pool=UNASSIGNED,
                    )
                )
        if points and msg.model is not None:
            self._index.upsert(msg.model, msg.dim, points)
            self._people.group(
                msg.model, msg.tenant, collection, [(p.id, p.vector) for p in points]
            )
        result["image"]["name"] = image.name
        return result

    def batch_done(self, tenant: str, collection: str) -> None:
        """A batch finished: faces still in no person get another chance."""
        self._people.regroup(tenant, collection)

    def _enroll(self, msg: PipelineMessage) -> dict[str, Any]:
        collection = _required(msg.params.collection, "collection")
        identity = _required(msg.params.identity_id, "identity_id")
        record = self._records(msg.tenant, collection, [identity]).get(identity)
        if record is None or record.state is not IdentityState.ACTIVE:
            raise IdentityNotFound(f"identity {identity} does not exist in {collection!r}")
        faces = msg.embedded_faces()
        names = {ref.index: ref.name for ref in msg.images}
        points = []
        if faces and msg.model is not None:
            vectors = unpack_vectors(msg.vectors, msg.dim)
            now = time.time()
            points = [
                FacePoint(
                    id=face_id(msg.job_id, face.image),
                    vector=vector,
                    tenant=msg.tenant,
                    collection=collection,
                    identity_id=identity,
                    extra={"image": names[face.image], "created_at": now, "model": msg.model},
                )
                for face, vector in zip(faces, vectors, strict=True)
            ]
            self._index.upsert(msg.model, msg.dim, points)
        return {
            "identity_id": identity,
            "faces": [
                {"face_id": p.id, "image": names[f.image], **face_json(f)}
                for p, f in zip(points, faces, strict=True)
            ],
            "refused": [
                {"image": ref.name, "reason": ref.refused.value}
                for ref in msg.images
                if ref.refused is not None
            ],
        }

    def _verify_identity(self, msg: PipelineMessage) -> dict[str, Any]:
        collection = _required(msg.params.collection, "collection")
        identity = _required(msg.params.identity_id, "identity_id")
        record = self._records(msg.tenant, collection, [identity]).get(identity)
        if record is None or record.state is not IdentityState.ACTIVE:
            raise IdentityNotFound(f"identity {identity} does not exist in {collection!r}")
        threshold, calibration = self._threshold(msg, collection)
        hits: list[Hit] = []
        if msg.model is not None and msg.dim:
            vectors = unpack_vectors(msg.vectors, msg.dim)
            hits = self._index.search(
                msg.model, vectors, Scope(msg.tenant, collection, identity), limit=1
            )[0]
        return {
            "identity": {"id": record.id, "name": record.name},
            "same": bool(hits) and hits[0].score >= threshold,
            **(
                scored(hits[0].score, calibration)
                if hits
                else {"similarity": None, "confidence": None}
            ),
            "threshold": threshold,
            "model": msg.model,
            "face": face_json(msg.faces[0]),
        }

    def admin(self, msg: AdminMessage) -> dict[str, Any]:
        if msg.op in PEOPLE_OPS:
            return self._people_op(msg)
        scope = Scope(msg.tenant, msg.collection, msg.identity_id)
        if msg.op is AdminOp.COUNT:
            return {"count": self._index.count(scope)}
        if msg.op is AdminOp.DELETE_IDENTITY:
            _required(msg.collection, "collection")
            _required(msg.identity_id, "identity_id")
        elif msg.op is AdminOp.DELETE_COLLECTION:
            _required(msg.collection, "collection")
        before = self._index.count(scope)
        self._index.delete(scope)
        # Erasure is confirmed by counting again, not assumed.
        return {"deleted": before, "remaining": self._index.count(scope)}

    def _people_op(self, msg: AdminMessage) -> dict[str, Any]:
        tenant, collection = msg.tenant, _required(msg.collection, "collection")
        people = self._people
        if msg.op is AdminOp.PEOPLE:
            return people.overview(tenant, collection)
        if msg.op is AdminOp.CLUSTER:
            grouped = people.regroup(tenant, collection)
            return {"grouped": grouped, **people.counts(tenant, collection)}
        person = _required(msg.person_id, "person_id")
        if msg.op is AdminOp.PERSON:
            return people.person(tenant, collection, person)
        if msg.op is AdminOp.NAME_PERSON:
            return people.name(tenant, collection, person, _required(msg.identity_id, "identity"))
        if msg.op is AdminOp.MERGE_PEOPLE:
            return people.merge(tenant, collection, person, _required(msg.target_id, "into"))
        face = _required(msg.face_id, "face_id")
        if msg.op is AdminOp.SPLIT_FACE:
            return people.split(tenant, collection, person, face)
        return people.reject(tenant, collection, person, face)


PEOPLE_OPS = frozenset(
    {
        AdminOp.PEOPLE,
        AdminOp.PERSON,
        AdminOp.NAME_PERSON,
        AdminOp.MERGE_PEOPLE,
        AdminOp.SPLIT_FACE,
        AdminOp.REJECT_FACE,
        AdminOp.CLUSTER,
    }
)


def _required(value: str | None, name: str) -> str:
    if not value:
        raise InvalidInput(f"{name} is required")
    return value


def _best_per_identity(hits: list[Hit], top_k: int) -> list[Hit]:
    """Hits come best first; keep each identity's best face, then the top k identities."""
    seen: dict[str, Hit] = {}
    for hit in hits:
        seen.setdefault(hit.identity_id, hit)
    return list(seen.values())[:top_k]
