"""The indexer's calls that carry no image: counts, an identity's faces, erasure, and the
people (unassigned faces grouped into clusters). The gateway sends them as an
``IndexCall`` on the index queue, because with the embedded engine only the indexer
process may open the index; some only read it.
"""

import uuid
from dataclasses import replace
from typing import Any

from facerec_common.embeddings import decode_b64, encode_b64
from facerec_common.errors import FaceNotFound, InvalidInput
from facerec_common.messages import IndexCall, IndexCallOp

from facerec_indexer.index import FaceIndex, Scope
from facerec_indexer.index.base import (
    ALL_MODELS,
    CROP,
    ENROLLED,
    IDENTITY,
    UNASSIGNED,
    FacePoint,
    FaceRecord,
)
from facerec_indexer.migration import Migrations
from facerec_indexer.people import People
from facerec_indexer.stage import required


class IndexCalls:
    def __init__(self, index: FaceIndex, people: People, migrations: Migrations) -> None:
        self._index = index
        self._people = people
        self._migrations = migrations

    def answer(self, msg: IndexCall) -> dict[str, Any]:
        """Carry out one call; the answer is the job's result."""
        if msg.op in MIGRATION_OPS:
            return self._migrations.answer(msg).model_dump(mode="json")
        if msg.op in ARCHIVE_OPS:
            return self._archive_op(msg)
        if msg.op in PEOPLE_OPS:
            return self._people_op(msg)
        if msg.op in FACE_OPS:
            return self._face_op(msg)
        scope = Scope(msg.tenant, msg.collection, msg.identity_id)
        if msg.op is IndexCallOp.COUNT:
            return {"count": self._index.count(scope)}
        if msg.op is IndexCallOp.DELETE_IDENTITY:
            required(msg.collection, "collection")
            required(msg.identity_id, "identity_id")
        elif msg.op is IndexCallOp.DELETE_COLLECTION:
            required(msg.collection, "collection")
        before = self._index.count(scope)
        # Crops are kept in their faces' points: the points that hold one are the crops
        # this erasure deletes.
        crops = self._index.count(replace(scope, with_crop=True))
        # Every model's index: a migrating gallery holds its faces in two.
        self._index.delete(replace(scope, model=ALL_MODELS))
        # Erasure is confirmed by counting again, in every model's index, not assumed.
        remaining = self._index.count(replace(scope, model=ALL_MODELS))
        return {"deleted": before, "deleted_crops": crops, "remaining": remaining}

    def _face_op(self, msg: IndexCall) -> dict[str, Any]:
        tenant, collection = msg.tenant, required(msg.collection, "collection")
        if msg.op is IndexCallOp.COUNT_IDENTITIES:
            return {
                "counts": {
                    identity: self._index.count(Scope(tenant, collection, identity, pool=ENROLLED))
                    for identity in msg.identity_ids
                }
            }
        if msg.op is IndexCallOp.DELETE_BATCH_FACES:
            batch = required(msg.batch_id, "batch_id")
            # Faces still unassigned; those named into an identity since belong to it now.
            added = [
                r
                for r in self._index.scroll(Scope(tenant, collection, pool=UNASSIGNED))
                if r.payload.get("batch_id") == batch
            ]
            _delete_records(self._index, added)
            left = [
                r
                for r in self._index.scroll(Scope(tenant, collection, pool=UNASSIGNED))
                if r.payload.get("batch_id") == batch
            ]
            return {"deleted": len(added), "remaining": len(left)}
        identity = required(msg.identity_id, "identity_id")
        scope = Scope(tenant, collection, identity, pool=ENROLLED)
        records = sorted(self._index.scroll(scope), key=_created)
        if msg.op is IndexCallOp.IDENTITY_FACES:
            return {"identity_id": identity, "faces": [_enrolled_face(r) for r in records]}
        face = required(msg.face_id, "face_id")
        found = [r for r in records if r.id == face]
        if not found:
            raise FaceNotFound(f"face {face} is not a face of identity {identity}")
        _delete_records(self._index, found)
        # Erasure is confirmed by reading again, not assumed.
        remaining = self._index.scroll(replace(scope, model=ALL_MODELS))
        remaining = [r for r in remaining if r.id == face]
        return {
            "face_id": face,
            "identity_id": identity,
            "deleted_faces": 1,
            "deleted_crops": sum(1 for r in found if r.payload.get(CROP)),
            "remaining_faces": len(remaining),
            "face_count": len(records) - 1 + len(remaining),
        }

    def _archive_op(self, msg: IndexCall) -> dict[str, Any]:
        """A gallery's enrolled faces of one model with their vectors (export), or such
        faces written into a gallery (import)."""
        tenant, collection = msg.tenant, required(msg.collection, "collection")
        model = required(msg.model, "model")
        scope = Scope(tenant, collection, pool=ENROLLED)
        if msg.op is IndexCallOp.EXPORT_FACES:
            records = sorted(self._index.scroll(scope, with_vectors=True), key=_created)
            return {"faces": [_archived_face(r) for r in records if r.model == model]}
        points = [_imported_point(tenant, collection, model, face) for face in msg.faces]
        if points:
            self._index.upsert(model, msg.dim or len(points[0].vector), points)
        return {"imported": len(points), "count": self._index.count(scope)}

    def _people_op(self, msg: IndexCall) -> dict[str, Any]:
        tenant, collection = msg.tenant, required(msg.collection, "collection")
        people = self._people
        if msg.op is IndexCallOp.PEOPLE:
            return people.overview(tenant, collection)
        if msg.op is IndexCallOp.CLUSTER:
            grouped = people.regroup(tenant, collection)
            return {"grouped": grouped, **people.counts(tenant, collection)}
        person = required(msg.person_id, "person_id")
        if msg.op is IndexCallOp.PERSON:
            return people.person(tenant, collection, person)
        if msg.op is IndexCallOp.NAME_PERSON:
            return people.name(tenant, collection, person, required(msg.identity_id, "identity"))
        if msg.op is IndexCallOp.MERGE_PEOPLE:
            return people.merge(tenant, collection, person, required(msg.target_id, "into"))
        face = required(msg.face_id, "face_id")
        if msg.op is IndexCallOp.SPLIT_FACE:
            return people.split(tenant, collection, person, face)
        return people.reject(tenant, collection, person, face)


PEOPLE_OPS = frozenset(
    {
        IndexCallOp.PEOPLE,
        IndexCallOp.PERSON,
        IndexCallOp.NAME_PERSON,
        IndexCallOp.MERGE_PEOPLE,
        IndexCallOp.SPLIT_FACE,
        IndexCallOp.REJECT_FACE,
        IndexCallOp.CLUSTER,
    }
)


FACE_OPS = frozenset(
    {
        IndexCallOp.IDENTITY_FACES,
        IndexCallOp.DELETE_FACE,
        IndexCallOp.COUNT_IDENTITIES,
        IndexCallOp.DELETE_BATCH_FACES,
    }
)


def _created(record: FaceRecord) -> tuple[float, str, str]:
    # Faces of one request share a time; their image names keep the order they were sent.
    payload = record.payload
    return (float(payload.get("created_at", 0)), str(payload.get("image", "")), record.id)


def _enrolled_face(record: FaceRecord) -> dict[str, Any]:
    payload = record.payload
    return {
        "face_id": record.id,
        "image": payload.get("image"),
        "bbox": payload.get("bbox"),
        "sha256": payload.get("sha256") or None,
        "created_at": payload.get("created_at"),
        # Faces enrolled before thumbnails were kept have none.
        "thumbnail": payload.get("thumbnail", ""),
        # Whether its aligned crop is kept; the crop itself is not handed out.
        "has_crop": bool(payload.get(CROP)),
    }


ARCHIVE_OPS = frozenset({IndexCallOp.EXPORT_FACES, IndexCallOp.IMPORT_FACES})
MIGRATION_OPS = frozenset(
    {
        IndexCallOp.MIGRATION_START,
        IndexCallOp.MIGRATION_CHECK,
        IndexCallOp.MIGRATION_CUTOVER,
        IndexCallOp.MIGRATION_ROLLBACK,
        IndexCallOp.MIGRATION_FINISH,
    }
)
# What an archived face keeps besides its id, identity and vector.
ARCHIVED_FIELDS = ("image", "sha256", "bbox", "created_at", "thumbnail")


def _archived_face(record: FaceRecord) -> dict[str, Any]:
    if record.vector is None:
        raise InvalidInput(f"face {record.id} was read without its vector")
    return {
        "id": record.id,
        "identity_id": record.payload.get(IDENTITY, ""),
        "vector": encode_b64(record.vector),
        **{name: record.payload.get(name) for name in ARCHIVED_FIELDS},
    }


def _imported_point(tenant: str, collection: str, model: str, face: dict[str, Any]) -> FacePoint:
    """A face of an archive as a point of this gallery. Points of every tenant share one
    Qdrant collection per model, so the archive's face id is not reused: the point is named
    by the gallery it lands in and that id, and importing the same archive twice into one
    gallery lands on the same points."""
    return FacePoint(
        id=str(uuid.uuid5(ARCHIVE_NAMESPACE, f"{tenant}:{collection}:{face['id']}")),
        vector=decode_b64(str(face["vector"])),
        tenant=tenant,
        collection=collection,
        identity_id=str(face["identity_id"]),
        extra={
            **{name: face.get(name) for name in ARCHIVED_FIELDS},
            "thumbnail": face.get("thumbnail") or "",
            "sha256": face.get("sha256") or "",
            "model": model,
        },
    )


ARCHIVE_NAMESPACE = uuid.UUID("3b0f6a4e-2f0d-4f7e-9a43-6c1f0b8d7e21")


def _delete_records(index: FaceIndex, records: list[FaceRecord]) -> None:
    """Delete these faces from every model's index (a migrating gallery holds its faces
    in two, under the same ids)."""
    ids = sorted({record.id for record in records})
    for model in index.models():
        index.delete_ids(model, ids)
