"""Response bodies of the gateway's own records (galleries, identities, batches, keys), so
the OpenAPI schema documents what each operation answers. Job results are in
``facerec_common.results``: the workers make those."""

from typing import Any

from facerec_common.identities import IdentityRecord
from facerec_common.quality import QualityFilter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from facerec_gateway.problems import Problem


class GalleryBody(BaseModel):
    name: str
    identities: int
    # The gallery's own match threshold; null: the model's default.
    threshold: float | None
    # The gallery's own enrolment quality bar; null: the service's default.
    quality_filter: QualityFilter | None = None
    # New enrolments keep each face's aligned crop (what a model migration re-embeds).
    keep_crops: bool = True
    # The model pack the gallery's faces are embedded with, once a migration set it;
    # null: the deployment's.
    model_pack: str | None = None


class IdentityBody(BaseModel):
    id: str
    name: str
    metadata: dict[str, Any]
    created_at: float
    face_count: int


class BatchCounts(BaseModel):
    submitted: int
    done: int
    failed: int
    duplicates: int
    faces: int
    matched: int
    unassigned: int
    queued: int
    # Faces under the low quality bar, by reason (counted, still matched).
    quality_blurred: int = 0
    quality_too_dark: int = 0
    quality_too_bright: int = 0
    quality_profile: int = 0
    quality_low_score: int = 0


class BatchCallback(BaseModel):
    status: str  # waiting, pending, sent, failed
    attempts: int
    last_error: str | None


class BatchBody(BaseModel):
    id: str
    collection: str | None
    name: str | None
    status: str  # open, closed, done, cancelled
    created_at: float | None
    closed_at: float | None
    finished_at: float | None
    cancelled_at: float | None
    callback_url: str | None
    counts: BatchCounts
    progress: float
    # Only for a batch with a callback_url.
    callback: BatchCallback | None = None


class AcceptedImage(BaseModel):
    name: str
    sha256: str
    job_id: str


class SeenImage(BaseModel):
    name: str
    sha256: str


class RefusedUpload(BaseModel):
    name: str
    problem: Problem


class AddedImages(BaseModel):
    batch_id: str
    accepted: list[AcceptedImage]
    # Sent to this gallery before (in this or another batch): not processed again.
    duplicates: list[SeenImage]
    refused: list[RefusedUpload]


class KeyBody(BaseModel):
    prefix: str
    tenant: str
    scopes: list[str]
    name: str
    created_at: float
    rate_limit_per_minute: int | None
    # Unix time after which the key is refused (401); null: it does not expire.
    expires_at: float | None
    # Unix time of its last use, to the minute; null: never used.
    last_used_at: float | None


class NewKeyBody(KeyBody):
    # The key itself: shown in this answer only.
    key: str


class GallerySummary(BaseModel):
    name: str
    identities: int


class GalleryList(BaseModel):
    collections: list[GallerySummary]


class GalleryErased(BaseModel):
    collection: str
    deleted_identities: int
    deleted_batches: int
    deleted_faces: int
    # The aligned crops kept with the deleted faces (a face has one or none).
    deleted_crops: int
    # Counted again after the erasure: 0 unless it failed.
    remaining_faces: int


class IdentityErased(BaseModel):
    id: str
    deleted_faces: int
    # The aligned crops kept with the deleted faces.
    deleted_crops: int
    remaining_faces: int


class StoredFace(BaseModel):
    """An enrolled face as the index keeps it."""

    face_id: str
    image: str | None  # the file name it was enrolled from
    bbox: list[float] | None
    sha256: str | None
    created_at: float | None
    # 64x64 JPEG, base64; empty for faces enrolled before thumbnails were kept.
    thumbnail: str
    # Its aligned 112x112 crop is kept in the index (never handed out); false where the
    # gallery keeps none, or for faces imported or named from a batch.
    has_crop: bool


class IdentityFaces(BaseModel):
    identity_id: str
    faces: list[StoredFace]


class FaceErased(BaseModel):
    face_id: str
    identity_id: str
    deleted_faces: int
    # 1 if the face kept its aligned crop, else 0.
    deleted_crops: int
    remaining_faces: int
    # The identity's faces left.
    face_count: int


class BatchErased(BaseModel):
    id: str
    deleted_faces: int
    remaining_faces: int
    # Image digests forgotten: the same files may be sent again.
    forgotten_images: int


class KnownImages(BaseModel):
    known: list[str]


class WebhookSecret(BaseModel):
    secret: str


class PersonSummary(BaseModel):
    id: str
    face_count: int
    thumbnail: str
    # The ids of the person's first faces.
    faces: list[str]


class PeopleOverview(BaseModel):
    people: list[PersonSummary]
    # Unassigned faces that are in no person yet.
    unclustered: int


class Clustered(BaseModel):
    # Faces that joined or founded a person in this run.
    grouped: int
    people: int
    unclustered: int


class PersonFace(BaseModel):
    face_id: str
    image: str | None
    bbox: list[float] | None
    batch_id: str | None
    thumbnail: str


class Person(BaseModel):
    id: str
    face_count: int
    faces: list[PersonFace]


class FaceRejected(BaseModel):
    face_id: str
    deleted: int
    remaining: int


class KeyRevoked(BaseModel):
    prefix: str
    revoked: bool


class TenantErased(BaseModel):
    tenant: str
    deleted_collections: int
    deleted_identities: int
    deleted_faces: int
    # The aligned crops kept with the deleted faces.
    deleted_crops: int
    remaining_faces: int
    deleted_dead_letters: int
    revoked_keys: int


class DeadLetterSummary(BaseModel):
    job_id: str
    stage: str
    code: str
    detail: str
    attempts: int
    at: float
    image_count: int


class DeadLetterList(BaseModel):
    dead_letters: list[DeadLetterSummary]


class Redriven(BaseModel):
    job_id: str
    stage: str
    status: str  # queued


def identity_body(record: IdentityRecord, face_count: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "metadata": record.metadata,
        "created_at": record.created_at,
    }
    if face_count is not None:
        body["face_count"] = face_count
    return body


def identity_created(collection: str, record: IdentityRecord, face_count: int) -> JSONResponse:
    return JSONResponse(
        identity_body(record, face_count=face_count),
        status_code=201,
        headers={"Location": f"/v1/collections/{collection}/identities/{record.id}"},
    )
