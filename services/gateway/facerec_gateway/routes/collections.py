from typing import Annotated, Any

from facerec_common.errors import IdentityNotFound
from facerec_common.identities import IdentityRecord
from facerec_common.messages import IndexCallOp, JobKind, JobParams
from facerec_common.quality import Landmarks, QualityFilter
from facerec_common.results import EnrolResult, RecognizeResult, VerifyIdentityResult
from fastapi import APIRouter, File, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from facerec_gateway.audit import Audit, AuditAction
from facerec_gateway.auth import ReadTenant, WriteTenant
from facerec_gateway.bodies import (
    FaceErased,
    GalleryBody,
    GalleryErased,
    GalleryList,
    IdentityBody,
    IdentityErased,
    IdentityFaces,
    identity_body,
    identity_created,
)
from facerec_gateway.deps import CollectionPath, IdentityPath, ServicesDep, UuidPath
from facerec_gateway.erasure import erase_gallery, erase_identity
from facerec_gateway.fields import Metadata, Name, NewIdentity, RequestBody
from facerec_gateway.indexer_calls import call_indexer
from facerec_gateway.job_store import JobBody
from facerec_gateway.problems import CONFLICT
from facerec_gateway.queries import (
    AllowDuplicateName,
    ConfidenceQuery,
    FastQuery,
    LandmarksQuery,
    MaxFacesQuery,
    MinFaceSizeQuery,
    QualityFilterQuery,
    ThresholdQuery,
    WaitQuery,
    threshold_params,
)
from facerec_gateway.responses import job_responses
from facerec_gateway.submit import submit_images

router = APIRouter(prefix="/v1/collections", tags=["collections"])


class IdentityChanges(RequestBody):
    """A PATCH of an identity: only the fields given change. Checked against the same
    rules as a new identity (see ``changed_identity``)."""

    name: Name | None = None
    metadata: Metadata | None = None


class IdentityPage(BaseModel):
    identities: list[IdentityBody]
    # Pass back as ``cursor`` for the next page; null on the last one.
    next_cursor: str | None


@router.get("", response_model=GalleryList)
async def list_collections(services: ServicesDep, tenant: ReadTenant) -> dict[str, Any]:
    return {"collections": await services.identities.collections(tenant)}


class GallerySettings(RequestBody):
    # Cosine similarity for this gallery's matches; null returns to the model's default.
    threshold: float | None = Field(None, ge=-1, le=1, strict=True)  # true is no number
    # The quality bar this gallery's enrolments apply; null returns to the service's
    # default. A body that names only this leaves the threshold as it is.
    quality_filter: QualityFilter | None = None
    # Whether new enrolments keep each face's aligned 112x112 crop (what a later model
    # migration re-embeds); null returns to the default, true. Faces enrolled already
    # keep theirs until they are deleted. A body that names only this leaves the rest.
    keep_crops: bool | None = Field(None, strict=True)


# Each gallery setting's change, as the audit trail names it.
SETTING_CHANGED = {
    "threshold": AuditAction.THRESHOLD_CHANGED,
    "quality_filter": AuditAction.QUALITY_FILTER_CHANGED,
    "keep_crops": AuditAction.KEEP_CROPS_CHANGED,
}


@router.get("/{collection}", response_model=GalleryBody)
async def get_collection(
    collection: CollectionPath, services: ServicesDep, tenant: ReadTenant
) -> dict[str, Any]:
    await services.identities.require_collection(tenant, collection)
    return await services.identities.collection(tenant, collection)


@router.put(
    "/{collection}",
    status_code=201,
    response_model=GalleryBody,
    responses={200: {"model": GalleryBody, "description": "The gallery existed already"}},
)
async def create_collection(
    collection: CollectionPath, services: ServicesDep, tenant: WriteTenant
) -> JSONResponse:
    """Create an empty gallery: 201, or 200 if it exists already (safe to repeat)."""
    created = await services.identities.add_collection(tenant, collection)
    return JSONResponse(
        await services.identities.collection(tenant, collection),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/collections/{collection}"},
    )


@router.patch("/{collection}", response_model=GalleryBody)
async def update_collection(
    collection: CollectionPath,
    body: GallerySettings,
    services: ServicesDep,
    tenant: WriteTenant,
    audit: Audit,
) -> dict[str, Any]:
    """Set the gallery's own match threshold (a request's threshold still overrides it),
    its enrolment quality bar, and whether its enrolments keep aligned crops."""
    await services.identities.require_collection(tenant, collection)
    before = await services.identities.collection(tenant, collection)
    # An empty body clears the threshold, as it always has.
    given = body.model_fields_set or {"threshold"}
    if "quality_filter" in given:
        await services.identities.set_quality_filter(tenant, collection, body.quality_filter)
    if "keep_crops" in given:
        keep = body.keep_crops is not False
        await services.identities.set_keep_crops(tenant, collection, keep)
    if "threshold" in given:
        await services.identities.set_threshold(tenant, collection, body.threshold)
    after = await services.identities.collection(tenant, collection)
    for setting in sorted(given):
        change = {"before": before[setting], "after": after[setting]}
        action = SETTING_CHANGED[setting]
        await audit.record(action, detail=change, collection=collection)
    return after


@router.delete("/{collection}", response_model=GalleryErased)
async def delete_collection(
    collection: CollectionPath, services: ServicesDep, tenant: WriteTenant, audit: Audit
) -> dict[str, Any]:
    """Delete a gallery: every identity record, every face vector (enrolled and
    unassigned), every batch with its results."""
    await services.identities.require_collection(tenant, collection)
    erased = erase_gallery(services, tenant, collection)
    return await audit.around(AuditAction.COLLECTION_DELETED, erased, collection=collection)


@router.post(
    "/{collection}/identities", status_code=201, response_model=IdentityBody, responses=CONFLICT
)
async def create_identity(
    collection: CollectionPath,
    body: NewIdentity,
    services: ServicesDep,
    tenant: WriteTenant,
    allow_duplicate_name: AllowDuplicateName = False,
) -> JSONResponse:
    """A new identity (the gallery is made if it is new); 409 if the gallery has one of
    this name already, unless ``allow_duplicate_name``."""
    record = await services.identities.create(
        tenant, collection, body.name, body.metadata, allow_duplicate_name
    )
    return identity_created(collection, record, face_count=0)


@router.get("/{collection}/identities", response_model=IdentityPage)
async def list_identities(
    collection: CollectionPath,
    services: ServicesDep,
    tenant: ReadTenant,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=36, pattern=r"^[0-9a-f-]{36}$", description="next_cursor of the page before"
        ),
    ] = None,
) -> dict[str, Any]:
    """Identities in creation order, each with its face count; pass ``next_cursor`` back as
    ``cursor`` for more."""
    await services.identities.require_collection(tenant, collection)
    records, next_cursor = await services.identities.page(tenant, collection, limit, cursor)
    counts: dict[str, int] = {}
    if records:
        counted = await call_indexer(
            services,
            IndexCallOp.COUNT_IDENTITIES,
            tenant,
            collection,
            identity_ids=[r.id for r in records],
        )
        counts = counted["counts"]
    return {
        "identities": [identity_body(r, face_count=counts.get(r.id, 0)) for r in records],
        "next_cursor": next_cursor,
    }


async def _existing(
    services: ServicesDep, tenant: str, collection: str, identity_id: str
) -> IdentityRecord:
    await services.identities.require_collection(tenant, collection)
    record = await services.identities.get(tenant, collection, identity_id)
    if record is None:
        raise IdentityNotFound(f"identity {identity_id} does not exist in {collection!r}")
    return record


@router.get("/{collection}/identities/{identity_id}", response_model=IdentityBody)
async def get_identity(
    collection: CollectionPath, identity_id: IdentityPath, services: ServicesDep, tenant: ReadTenant
) -> dict[str, Any]:
    record = await _existing(services, tenant, collection, identity_id)
    counted = await call_indexer(services, IndexCallOp.COUNT, tenant, collection, identity_id)
    return identity_body(record, face_count=counted["count"])


@router.patch(
    "/{collection}/identities/{identity_id}", response_model=IdentityBody, responses=CONFLICT
)
async def update_identity(
    collection: CollectionPath,
    identity_id: IdentityPath,
    body: IdentityChanges,
    services: ServicesDep,
    tenant: WriteTenant,
    allow_duplicate_name: AllowDuplicateName = False,
) -> dict[str, Any]:
    """Rename an identity or replace its metadata; later matches carry the new name."""
    record = await _existing(services, tenant, collection, identity_id)
    checked = changed_identity(record, body)
    updated = await services.identities.update(
        tenant,
        collection,
        record,
        checked.name if body.name is not None else None,
        checked.metadata if body.metadata is not None else None,
        allow_duplicate_name,
    )
    counted = await call_indexer(services, IndexCallOp.COUNT, tenant, collection, identity_id)
    return identity_body(updated, face_count=counted["count"])


def changed_identity(record: IdentityRecord, body: IdentityChanges) -> NewIdentity:
    """The identity as it would be after the change, checked by the rules of a new one,
    so a rename can never get past a limit that creating would enforce."""
    try:
        return NewIdentity.model_validate(
            {
                "name": body.name if body.name is not None else record.name,
                "metadata": body.metadata if body.metadata is not None else record.metadata,
            }
        )
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None


@router.get("/{collection}/identities/{identity_id}/faces", response_model=IdentityFaces)
async def identity_faces(
    collection: CollectionPath, identity_id: IdentityPath, services: ServicesDep, tenant: ReadTenant
) -> dict[str, Any]:
    """The identity's enrolled faces, oldest first: the image each came from, its box and a
    64x64 thumbnail (base64 JPEG), so that a wrong one can be found and deleted."""
    await _existing(services, tenant, collection, identity_id)
    return await call_indexer(services, IndexCallOp.IDENTITY_FACES, tenant, collection, identity_id)


@router.delete("/{collection}/identities/{identity_id}/faces/{face_id}", response_model=FaceErased)
async def delete_identity_face(
    collection: CollectionPath,
    identity_id: IdentityPath,
    face_id: UuidPath,
    services: ServicesDep,
    tenant: WriteTenant,
    audit: Audit,
) -> dict[str, Any]:
    """Erase one enrolled face (its vector, box, thumbnail); the answer confirms it is gone
    and gives the identity's remaining face count."""
    await _existing(services, tenant, collection, identity_id)
    erased = call_indexer(
        services, IndexCallOp.DELETE_FACE, tenant, collection, identity_id, face_id=face_id
    )
    target = {"collection": collection, "identity_id": identity_id, "face_id": face_id}
    return await audit.around(AuditAction.FACE_DELETED, erased, **target)


@router.delete("/{collection}/identities/{identity_id}", response_model=IdentityErased)
async def delete_identity(
    collection: CollectionPath,
    identity_id: IdentityPath,
    services: ServicesDep,
    tenant: WriteTenant,
    audit: Audit,
) -> dict[str, Any]:
    """Delete an identity and every face vector of it; the answer confirms none remain."""
    await _existing(services, tenant, collection, identity_id)
    erased = erase_identity(services, tenant, collection, identity_id)
    target = {"collection": collection, "identity_id": identity_id}
    return await audit.around(AuditAction.IDENTITY_DELETED, erased, **target)


@router.post(
    "/{collection}/identities/{identity_id}/faces",
    status_code=202,
    response_model=None,
    responses=job_responses(JobBody[EnrolResult]),
)
async def enroll(
    collection: CollectionPath,
    identity_id: IdentityPath,
    services: ServicesDep,
    tenant: WriteTenant,
    image: Annotated[list[UploadFile], File(description="One or more images, one face each")],
    largest_face: Annotated[
        bool, Query(description="Use the largest face of an image that has several")
    ] = False,
    quality_filter: QualityFilterQuery = None,
    landmarks: LandmarksQuery = Landmarks.FIVE,
    wait: WaitQuery = 0,
) -> JSONResponse:
    """Add face images to an identity; the result lists new face ids and refused images
    (with why: no face, several, too small, or under the quality bar)."""
    await _existing(services, tenant, collection, identity_id)
    gallery = await services.identities.collection(tenant, collection)
    params = JobParams(
        collection=collection,
        identity_id=identity_id,
        largest_face=largest_face,
        quality_filter=quality_filter or gallery["quality_filter"],
        landmarks=landmarks,
        keep_crops=gallery["keep_crops"],
    )
    return await submit_images(services, tenant, JobKind.ENROLL, image, params, wait)


@router.post(
    "/{collection}/recognize",
    status_code=202,
    response_model=None,
    responses=job_responses(JobBody[RecognizeResult]),
)
async def recognize(
    collection: CollectionPath,
    services: ServicesDep,
    tenant: ReadTenant,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP")],
    threshold: ThresholdQuery = None,
    confidence_threshold: ConfidenceQuery = None,
    max_faces: MaxFacesQuery = None,
    min_face_size: MinFaceSizeQuery = None,
    fast: FastQuery = False,
    top_k: Annotated[int, Query(ge=1, le=20)] = 1,
    quality_filter: QualityFilterQuery = None,
    landmarks: LandmarksQuery = Landmarks.FIVE,
    wait: WaitQuery = 0,
) -> JSONResponse:
    """Every face in the image with who it is (or null: unknown) and the top candidates.
    A gallery that does not exist answers 404, never a photo full of unknowns. With a
    quality_filter, faces under it are reported with their quality_issues, not matched."""
    await services.identities.require_collection(tenant, collection)
    params = JobParams(
        collection=collection,
        max_faces=max_faces,
        min_face_size=min_face_size,
        fast=fast,
        top_k=top_k,
        quality_filter=quality_filter,
        landmarks=landmarks,
        **threshold_params(threshold, confidence_threshold),
    )
    return await submit_images(services, tenant, JobKind.RECOGNIZE, [image], params, wait)


@router.post(
    "/{collection}/identities/{identity_id}/verify",
    status_code=202,
    response_model=None,
    responses=job_responses(JobBody[VerifyIdentityResult]),
)
async def verify_identity(
    collection: CollectionPath,
    identity_id: IdentityPath,
    services: ServicesDep,
    tenant: ReadTenant,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP")],
    threshold: ThresholdQuery = None,
    confidence_threshold: ConfidenceQuery = None,
    wait: WaitQuery = 0,
) -> JSONResponse:
    """1:1 against an identity: is the photo's largest face this person?"""
    await _existing(services, tenant, collection, identity_id)
    params = JobParams(
        collection=collection,
        identity_id=identity_id,
        **threshold_params(threshold, confidence_threshold),
    )
    return await submit_images(services, tenant, JobKind.VERIFY_IDENTITY, [image], params, wait)
