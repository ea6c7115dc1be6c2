"""Gallery archives: export a gallery with its vectors, import one into another gallery,
tenant or deployment, and the secret archives are signed with. Every route needs the
admin scope: an archive holds every face vector of a gallery."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from facerec_gateway.archives import (
    MEDIA_TYPE,
    ArchiveLine,
    ArchiveSecret,
    ImportResult,
    archive_secret,
    export_lines,
    import_archive,
)
from facerec_gateway.audit import Audit, AuditAction, Detail
from facerec_gateway.auth import AdminKey
from facerec_gateway.deps import CollectionPath, ServicesDep

router = APIRouter(prefix="/v1", tags=["archives"])


class ArchiveResponse(StreamingResponse):
    media_type = MEDIA_TYPE


@router.get(
    "/collections/{collection}/export",
    response_class=ArchiveResponse,
    response_model=None,
    responses={200: {"model": ArchiveLine, "description": "The archive, one JSON object a line"}},
)
async def export_collection(
    collection: CollectionPath, key: AdminKey, services: ServicesDep, audit: Audit
) -> ArchiveResponse:
    """The gallery as a portable archive (JSON Lines): a manifest (format version, model
    tag, metric, counts), its identities with their metadata, its enrolled faces with their
    vectors, and an end line with the archive's sha256 and signature."""
    await services.identities.require_collection(key.tenant, collection)
    counts, lines = await export_lines(services, key.tenant, collection)
    detail: Detail = {"identities": counts.identities, "faces": counts.faces}
    await audit.record(AuditAction.COLLECTION_EXPORTED, detail=detail, collection=collection)
    return ArchiveResponse(
        lines,
        headers={
            "Content-Disposition": f'attachment; filename="{collection}.facerec.jsonl"',
            "X-Archive-Identities": str(counts.identities),
            "X-Archive-Faces": str(counts.faces),
        },
    )


@router.post(
    "/collections/{collection}/import",
    response_model=ImportResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            # The archive as export made it (JSON Lines), sent as is; any content type.
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def import_collection(
    collection: CollectionPath,
    request: Request,
    key: AdminKey,
    services: ServicesDep,
    audit: Audit,
    x_archive_secret: Annotated[
        str | None,
        Header(
            max_length=200,
            description="The exporting tenant's archive secret, for an archive of another "
            "tenant or deployment",
        ),
    ] = None,
) -> Any:
    """Import an archive made by export into a new or empty gallery: the same identities
    (ids, names, metadata) and faces, so every search answers as it did in the source. An
    archive changed or cut short, of another model, or signed by another tenant (without
    its secret) is refused with a 422 saying which."""
    data = await request.body()
    imported = import_archive(services, key.tenant, collection, data, x_archive_secret)
    return await audit.around(AuditAction.COLLECTION_IMPORTED, imported, collection=collection)


@router.get("/archive-secret", response_model=ArchiveSecret)
async def get_archive_secret(key: AdminKey, services: ServicesDep, audit: Audit) -> dict[str, Any]:
    """The secret this tenant's archives are signed with (HMAC-SHA256); made on first use.
    Give it, with an archive, to the tenant or deployment that imports it."""
    secret = await archive_secret(services, key.tenant)
    await audit.record(AuditAction.ARCHIVE_SECRET_READ)
    return {"secret": secret}
