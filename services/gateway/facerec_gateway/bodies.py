"""Response bodies of the gateway's own records (galleries, identities, batches, keys), so
the OpenAPI schema documents what each operation answers. Job results are in
``facerec_common.results``: the workers make those."""

from typing import Any

from pydantic import BaseModel

from facerec_gateway.problems import Problem


class GalleryBody(BaseModel):
    name: str
    identities: int
    # The gallery's own match threshold; null: the model's default.
    threshold: float | None


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


class NewKeyBody(KeyBody):
    # The key itself: shown in this answer only.
    key: str
