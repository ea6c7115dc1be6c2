from typing import Annotated, Any

from facerec_common.errors import IdentityNotFound, NotFound
from facerec_common.identities import IdentityRecord
from facerec_common.messages import AdminOp, JobKind, JobParams
from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from facerec_gateway.admin import index_admin
from facerec_gateway.auth import ReadTenant, WriteTenant
from facerec_gateway.deps import CollectionPath, IdentityPath, ServicesDep
from facerec_gateway.routes.images import (
    ConfidenceQuery,
    MaxFacesQuery,
    ThresholdQuery,
    threshold_params,
)
from facerec_gateway.routes.jobs import WaitQuery
from facerec_gateway.submit import submit_images

router = APIRouter(prefix="/v1/collections", tags=["collections"])


class NewIdentity(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


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


@router.get("")
async def list_collections(services: ServicesDep, tenant: ReadTenant) -> dict[str, Any]:
    return {"collections": await services.identities.collections(tenant)}


class GallerySettings(BaseModel):
    # Cosine similarity for this gallery's matches; null returns to the model's default.
    threshold: float | None = Field(None, ge=-1, le=1)


@router.get("/{collection}")
async def get_collection(
    collection: CollectionPath, services: ServicesDep, tenant: ReadTenant
) -> dict[str, Any]:
    if not await services.identities.has_collection(tenant, collection):
        raise NotFound(f"collection {collection!r} does not exist")
    return await services.identities.collection(tenant, collection)


@router.patch("/{collection}")
async def update_collection(
    collection: CollectionPath, body: GallerySettings, services: ServicesDep, tenant: WriteTenant
) -> dict[str, Any]:
    """Set the gallery's own match threshold (a request's threshold still overrides it)."""
    await services.identities.set_threshold(tenant, collection, body.threshold)
    return await services.identities.collection(tenant, collection)


@router.delete("/{collection}")
async def delete_collection(
    collection: CollectionPath, services: ServicesDep, tenant: WriteTenant
) -> dict[str, Any]:
    """Delete a gallery: every identity record, every face vector (enrolled and
    unassigned), every batch with its results."""
    if not await services.identities.has_collection(tenant, collection):
        raise NotFound(f"collection {collection!r} does not exist")
    ids = await services.identities.mark_collection_deleting(tenant, collection)
    erased = await index_admin(services, AdminOp.DELETE_COLLECTION, tenant, collection)
    await services.identities.remove_collection(tenant, collection, ids)
    batches = await services.batches.erase_collection(tenant, collection)
    return {
        "collection": collection,
        "deleted_identities": len(ids),
        "deleted_batches": batches,
        "deleted_faces": erased["deleted"],
        "remaining_faces": erased["remaining"],
    }


@router.post("/{collection}/identities", status_code=201)
async def create_identity(
    collection: CollectionPath, body: NewIdentity, services: ServicesDep, tenant: WriteTenant
) -> JSONResponse:
    record = await services.identities.create(tenant, collection, body.name, body.metadata)
    return identity_created(collection, record, face_count=0)


def identity_created(collection: str, record: IdentityRecord, face_count: int) -> JSONResponse:
    return JSONResponse(
        identity_body(record, face_count=face_count),
        status_code=201,
        headers={"Location": f"/v1/collections/{collection}/identities/{record.id}"},
    )


@router.get("/{collection}/identities")
async def list_identities(
    collection: CollectionPath,
    services: ServicesDep,
    tenant: ReadTenant,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Identities in creation order; pass ``next_cursor`` back as ``cursor`` for more."""
    records, next_cursor = await services.identities.page(tenant, collection, limit, cursor)
    return {"identities": [identity_body(r) for r in records], "next_cursor": next_cursor}


async def _existing(
    services: ServicesDep, tenant: str, collection: str, identity_id: str
) -> IdentityRecord:
    record = await services.identities.get(tenant, collection, identity_id)
    if record is None:
        raise IdentityNotFound(f"identity {identity_id} does not exist in {collection!r}")
    return record


@router.get("/{collection}/identities/{identity_id}")
async def get_identity(
    collection: CollectionPath, identity_id: IdentityPath, services: ServicesDep, tenant: ReadTenant
) -> dict[str, Any]:
    record = await _existing(services, tenant, collection, identity_id)
    counted = await index_admin(services, AdminOp.COUNT, tenant, collection, identity_id)
    return identity_body(record, face_count=counted["count"])


@router.delete("/{collection}/identities/{identity_id}")
async def delete_identity(
    collection: CollectionPath,
    identity_id: IdentityPath,
    services: ServicesDep,
    tenant: WriteTenant,
) -> dict[str, Any]:
    """Delete an identity and every face vector of it; the answer confirms none remain."""
    await _existing(services, tenant, collection, identity_id)
    # Marked first, so the indexer refuses faces of an enrolment racing this delete.
    await services.identities.mark_deleting(tenant, collection, identity_id)
    erased = await index_admin(services, AdminOp.DELETE_IDENTITY, tenant, collection, identity_id)
    await services.identities.remove(tenant, collection, identity_id)
    return {
        "id": identity_id,
        "deleted_faces": erased["deleted"],
        "remaining_faces": erased["remaining"],
    }


@router.post("/{collection}/identities/{identity_id}/faces", status_code=202, response_model=None)
async def enroll(
    collection: CollectionPath,
    identity_id: IdentityPath,
    services: ServicesDep,
    tenant: WriteTenant,
    image: Annotated[list[UploadFile], File(description="One or more images, one face each")],
    largest_face: Annotated[
        bool, Query(description="Use the largest face of an image that has several")
    ] = False,
    wait: WaitQuery = 0,
) -> JSONResponse:
    """Add face images to an identity; the result lists new face ids and refused images."""
    await _existing(services, tenant, collection, identity_id)
    params = JobParams(collection=collection, identity_id=identity_id, largest_face=largest_face)
    return await submit_images(services, tenant, JobKind.ENROLL, image, params, wait)


@router.post("/{collection}/recognize", status_code=202, response_model=None)
async def recognize(
    collection: CollectionPath,
    services: ServicesDep,
    tenant: ReadTenant,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP or BMP")],
    threshold: ThresholdQuery = None,
    confidence_threshold: ConfidenceQuery = None,
    max_faces: MaxFacesQuery = None,
    top_k: Annotated[int, Query(ge=1, le=20)] = 1,
    wait: WaitQuery = 0,
) -> JSONResponse:
    """Every face in the image with who it is (or null: unknown) and the top candidates."""
    await services.identities.add_collection(tenant, collection)
    params = JobParams(
        collection=collection,
        max_faces=max_faces,
        top_k=top_k,
        **threshold_params(threshold, confidence_threshold),
    )
    return await submit_images(services, tenant, JobKind.RECOGNIZE, [image], params, wait)


@router.post("/{collection}/identities/{identity_id}/verify", status_code=202, response_model=None)
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
