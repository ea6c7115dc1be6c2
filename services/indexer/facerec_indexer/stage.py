"""The index stage: match a recognise job's vectors against a gallery, or store an enrol
job's vectors under its identity; and the admin operations (count, erasure)."""

import time
import uuid
from typing import Any

import redis
from facerec_common.codec import unpack_vectors
from facerec_common.errors import IdentityNotFound, InvalidInput
from facerec_common.identities import IdentityRecord, IdentityState
from facerec_common.messages import AdminMessage, AdminOp, JobKind, PipelineMessage, face_json
from facerec_common.metrics import INDEX_SEARCH, timed
from facerec_common.names import collection_settings_key, identity_key
from facerec_common.scores import Calibration, resolve_threshold, scored

from facerec_indexer.index import FaceIndex, FacePoint, Hit, Scope

# Face ids are uuid5 of the job and image, so a redelivered task overwrites its own points.
FACE_NAMESPACE = uuid.UUID("6f1d0c4e-8a53-4bb4-9a55-1f0e7c3a2b91")


def face_id(job_id: str, image_index: int) -> str:
    return str(uuid.uuid5(FACE_NAMESPACE, f"{job_id}:{image_index}"))


class IndexStage:
    def __init__(
        self,
        index: FaceIndex,
        client: redis.Redis,
        faces_per_candidate: int,
        max_top_k: int,
    ) -> None:
        self._index = index
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
                    Scope(msg.tenant, collection),
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
