"""People: unassigned faces of a gallery grouped into candidate persons, to be named
(they become an identity), merged, split or rejected."""

from typing import Annotated, Any

from facerec_common.errors import InvalidInput
from facerec_common.messages import IndexCallOp
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import Field

from facerec_gateway.audit import Audit, AuditAction
from facerec_gateway.auth import ReadTenant, WriteTenant, existing_collection
from facerec_gateway.bodies import (
    Clustered,
    FaceRejected,
    IdentityBody,
    PeopleOverview,
    Person,
    identity_created,
)
from facerec_gateway.deps import CollectionPath, ServicesDep, UuidPath
from facerec_gateway.fields import NewIdentity, RequestBody
from facerec_gateway.indexer_calls import call_indexer
from facerec_gateway.problems import CONFLICT
from facerec_gateway.queries import AllowDuplicateName

router = APIRouter(
    prefix="/v1/collections/{collection}/people",
    tags=["people"],
    # A gallery that does not exist answers 404 on every people route.
    dependencies=[Depends(existing_collection)],
)


class MergeInto(RequestBody):
    into: Annotated[str, Field(pattern=r"^[0-9a-f-]{36}$", description="The person to merge into")]


@router.get("", response_model=PeopleOverview)
async def list_people(
    collection: CollectionPath, services: ServicesDep, tenant: ReadTenant
) -> dict[str, Any]:
    """Candidate persons, largest first, each with a thumbnail and its first faces."""
    return await call_indexer(services, IndexCallOp.PEOPLE, tenant, collection)


@router.post("/cluster", response_model=Clustered)
async def cluster_now(
    collection: CollectionPath, services: ServicesDep, tenant: WriteTenant
) -> dict[str, Any]:
    """Group the faces that are in no person yet, now (this also runs when a batch ends)."""
    return await call_indexer(services, IndexCallOp.CLUSTER, tenant, collection)


@router.get("/{person_id:id}", response_model=Person)
async def get_person(
    collection: CollectionPath, person_id: UuidPath, services: ServicesDep, tenant: ReadTenant
) -> dict[str, Any]:
    return await call_indexer(services, IndexCallOp.PERSON, tenant, collection, person_id=person_id)


@router.post("/{person_id}/name", status_code=201, response_model=IdentityBody, responses=CONFLICT)
async def name_person(
    collection: CollectionPath,
    person_id: UuidPath,
    body: NewIdentity,
    services: ServicesDep,
    tenant: WriteTenant,
    allow_duplicate_name: AllowDuplicateName = False,
) -> JSONResponse:
    """Make the person an identity: every face of it becomes an enrolled face. 409 if the
    gallery has an identity of this name already, unless ``allow_duplicate_name``."""
    # The person must exist before an identity is made for it.
    await call_indexer(services, IndexCallOp.PERSON, tenant, collection, person_id=person_id)
    record = await services.identities.create(
        tenant, collection, body.name, body.metadata, allow_duplicate_name
    )
    moved = await call_indexer(
        services,
        IndexCallOp.NAME_PERSON,
        tenant,
        collection,
        identity_id=record.id,
        person_id=person_id,
    )
    return identity_created(collection, record, face_count=moved["faces"])


@router.post("/{person_id}/merge", response_model=Person)
async def merge_person(
    collection: CollectionPath,
    person_id: UuidPath,
    body: MergeInto,
    services: ServicesDep,
    tenant: WriteTenant,
) -> dict[str, Any]:
    """Move every face of this person to ``into`` (422 if they are the same person)."""
    if body.into == person_id:
        raise InvalidInput("a person cannot be merged into itself; give another person's id")
    return await call_indexer(
        services,
        IndexCallOp.MERGE_PEOPLE,
        tenant,
        collection,
        person_id=person_id,
        target_id=body.into,
    )


@router.post("/{person_id}/faces/{face_id}/split", response_model=Person)
async def split_face(
    collection: CollectionPath,
    person_id: UuidPath,
    face_id: UuidPath,
    services: ServicesDep,
    tenant: WriteTenant,
) -> dict[str, Any]:
    """Take the face out of the person: it becomes a person of its own."""
    return await call_indexer(
        services, IndexCallOp.SPLIT_FACE, tenant, collection, person_id=person_id, face_id=face_id
    )


@router.delete("/{person_id}/faces/{face_id}", response_model=FaceRejected)
async def reject_face(
    collection: CollectionPath,
    person_id: UuidPath,
    face_id: UuidPath,
    services: ServicesDep,
    tenant: WriteTenant,
    audit: Audit,
) -> dict[str, Any]:
    """Erase the face from the index."""
    erased = call_indexer(
        services, IndexCallOp.REJECT_FACE, tenant, collection, person_id=person_id, face_id=face_id
    )
    target = {"collection": collection, "person_id": person_id, "face_id": face_id}
    return await audit.around(AuditAction.PERSON_FACE_REJECTED, erased, **target)
