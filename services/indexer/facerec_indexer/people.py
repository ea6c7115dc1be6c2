"""People: a gallery's unassigned faces (batch faces that matched nobody) grouped into
candidate persons, and the operations a user does on them (name, merge, split, reject).

Grouping is incremental (``clustering.assign``): each batch image's new faces are grouped
as they are stored; when a batch finishes, the faces still in no group are passed again,
since faces that arrived later may have made them part of a group.
"""

import base64
import uuid
from collections import defaultdict
from typing import Any

from facerec_common.errors import InvalidInput, NotFound

from facerec_indexer.clustering import ClusterParams, Vector, assign
from facerec_indexer.index import FaceIndex, Scope
from facerec_indexer.index.base import CLUSTER, ENROLLED, IDENTITY, POOL, UNASSIGNED, FaceRecord

# How many face ids a person lists in the people overview.
SAMPLE_FACES = 5


def thumbnail_text(jpeg: bytes) -> str:
    return base64.b64encode(jpeg).decode() if jpeg else ""


class People:
    def __init__(self, index: FaceIndex, params: ClusterParams) -> None:
        self._index = index
        self._params = params

    def group(
        self, model: str, tenant: str, collection: str, faces: list[tuple[str, Vector]]
    ) -> int:
        """One round of grouping over ``faces`` (already stored as unassigned faces);
        returns how many joined or founded a person."""
        if not faces:
            return 0
        scope = Scope(tenant, collection, pool=UNASSIGNED)
        cluster_of: dict[str, str] = {}

        def neighbours(vector: Vector, max_distance: float, limit: int) -> list[tuple[str, float]]:
            [hits] = self._index.search(model, vector[None, :], scope, limit)
            near = []
            for hit in hits:
                if hit.cluster_id:
                    cluster_of[hit.point_id] = hit.cluster_id
                if 1.0 - hit.score <= max_distance:
                    near.append((hit.point_id, 1.0 - hit.score))
            return near

        # assign() looks every face's neighbours up before it reads cluster_of, so the
        # clusters seen in those lookups are all it needs.
        assigned = assign(faces, neighbours, cluster_of, self._params, lambda: str(uuid.uuid4()))
        by_cluster: dict[str, list[str]] = defaultdict(list)
        for face_id, cluster_id in assigned.items():
            by_cluster[cluster_id].append(face_id)
        for cluster_id, ids in by_cluster.items():
            self._index.set_payload(model, ids, {CLUSTER: cluster_id})
        return len(assigned)

    def regroup(self, tenant: str, collection: str) -> int:
        """Pass every face that is in no person again; how many joined or founded one."""
        loose = self._index.scroll(
            Scope(tenant, collection, pool=UNASSIGNED, cluster_id=""), with_vectors=True
        )
        by_model: dict[str, list[tuple[str, Vector]]] = defaultdict(list)
        for record in loose:
            if record.vector is not None:
                by_model[record.model].append((record.id, record.vector))
        return sum(
            self.group(model, tenant, collection, faces) for model, faces in by_model.items()
        )

    def counts(self, tenant: str, collection: str) -> dict[str, int]:
        records = self._unassigned(tenant, collection)
        people = {r.payload.get(CLUSTER) for r in records} - {"", None}
        loose = sum(1 for r in records if not r.payload.get(CLUSTER))
        return {"people": len(people), "unclustered": loose}

    def overview(self, tenant: str, collection: str) -> dict[str, Any]:
        members: dict[str, list[FaceRecord]] = defaultdict(list)
        loose = 0
        for record in self._unassigned(tenant, collection):
            cluster_id = record.payload.get(CLUSTER) or ""
            if cluster_id:
                members[cluster_id].append(record)
            else:
                loose += 1
        people = []
        for cluster_id, records in members.items():
            records.sort(key=_order)
            people.append(
                {
                    "id": cluster_id,
                    "face_count": len(records),
                    "thumbnail": records[0].payload.get("thumbnail", ""),
                    "faces": [r.id for r in records[:SAMPLE_FACES]],
                }
            )
        people.sort(key=lambda p: (-p["face_count"], p["id"]))
        return {"people": people, "unclustered": loose}

    def person(self, tenant: str, collection: str, person_id: str) -> dict[str, Any]:
        records = sorted(self._members(tenant, collection, person_id), key=_order)
        return {"id": person_id, "face_count": len(records), "faces": [_face(r) for r in records]}

    def name(
        self, tenant: str, collection: str, person_id: str, identity_id: str
    ) -> dict[str, Any]:
        """Every face of the person becomes an enrolled face of ``identity_id``."""
        records = self._members(tenant, collection, person_id)
        self._update(records, {POOL: ENROLLED, IDENTITY: identity_id, CLUSTER: ""})
        return {"identity_id": identity_id, "faces": len(records)}

    def merge(self, tenant: str, collection: str, person_id: str, target_id: str) -> dict[str, Any]:
        if person_id == target_id:
            raise InvalidInput("a person cannot be merged into itself; give another person")
        self._members(tenant, collection, target_id)  # the target must exist
        self._update(self._members(tenant, collection, person_id), {CLUSTER: target_id})
        return self.person(tenant, collection, target_id)

    def split(self, tenant: str, collection: str, person_id: str, face_id: str) -> dict[str, Any]:
        """The face leaves the person and becomes a person of its own."""
        record = self._member(tenant, collection, person_id, face_id)
        new_id = str(uuid.uuid4())
        self._update([record], {CLUSTER: new_id})
        return self.person(tenant, collection, new_id)

    def reject(self, tenant: str, collection: str, person_id: str, face_id: str) -> dict[str, Any]:
        """Erase the face: it is no one worth keeping (a poster, a stranger, a false face)."""
        record = self._member(tenant, collection, person_id, face_id)
        self._index.delete_ids(record.model, [record.id])
        remaining = [
            r for r in self._members_or_none(tenant, collection, person_id) if r.id == face_id
        ]
        return {"face_id": face_id, "deleted": 1, "remaining": len(remaining)}

    def _unassigned(self, tenant: str, collection: str) -> list[FaceRecord]:
        return self._index.scroll(Scope(tenant, collection, pool=UNASSIGNED))

    def _members_or_none(self, tenant: str, collection: str, person_id: str) -> list[FaceRecord]:
        return self._index.scroll(Scope(tenant, collection, pool=UNASSIGNED, cluster_id=person_id))

    def _members(self, tenant: str, collection: str, person_id: str) -> list[FaceRecord]:
        records = self._members_or_none(tenant, collection, person_id) if person_id else []
        if not records:
            raise NotFound(f"person {person_id} does not exist in {collection!r}")
        return records

    def _member(self, tenant: str, collection: str, person_id: str, face_id: str) -> FaceRecord:
        for record in self._members(tenant, collection, person_id):
            if record.id == face_id:
                return record
        raise NotFound(f"face {face_id} is not a face of person {person_id}")

    def _update(self, records: list[FaceRecord], payload: dict[str, Any]) -> None:
        by_model: dict[str, list[str]] = defaultdict(list)
        for record in records:
            by_model[record.model].append(record.id)
        for model, ids in by_model.items():
            self._index.set_payload(model, ids, payload)


def _order(record: FaceRecord) -> tuple[float, str]:
    return (float(record.payload.get("created_at", 0)), record.id)


def _face(record: FaceRecord) -> dict[str, Any]:
    payload = record.payload
    return {
        "face_id": record.id,
        "image": payload.get("image"),
        "bbox": payload.get("bbox"),
        "batch_id": payload.get("batch_id"),
        "thumbnail": payload.get("thumbnail", ""),
    }
