"""Batches: photo archives sent in parts, processed at low priority, read back in pages."""

import hashlib
from typing import Annotated, Any

from facerec_common.batches import BatchLine
from facerec_common.errors import FaceRecError, InvalidInput, NotFound
from facerec_common.logs import current_job
from facerec_common.messages import ImageRef, IndexCallOp, JobKind, JobParams, PipelineMessage
from facerec_common.names import BATCH_PRIORITY, Task
from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import AnyHttpUrl, BaseModel, Field

from facerec_gateway.audit import Audit, AuditAction
from facerec_gateway.auth import ReadTenant, WriteTenant
from facerec_gateway.batch_store import Admission
from facerec_gateway.bodies import AddedImages, BatchBody, BatchErased, KnownImages
from facerec_gateway.deps import CollectionPath, Services, ServicesDep, UuidPath
from facerec_gateway.fields import RequestBody
from facerec_gateway.ids import sortable_id
from facerec_gateway.indexer_calls import call_indexer
from facerec_gateway.limits import ensure_room
from facerec_gateway.problems import (
    CONFLICT,
    STATUS_BY_CODE,
    Conflict,
    problem_body,
    stored_problem,
)
from facerec_gateway.uploads import read_image

router = APIRouter(prefix="/v1", tags=["batches"])


# A position in a batch's results: more than any batch holds, and far inside what Redis
# takes as a list index (a signed 64-bit integer).
MAX_RESULTS_CURSOR = 1_000_000_000


class NewBatch(RequestBody):
    name: str | None = Field(None, max_length=200)
    # POSTed a signed summary when the batch is done (see the README: Callbacks).
    callback_url: AnyHttpUrl | None = None


class BatchList(BaseModel):
    batches: list[BatchBody]


class BatchResultsPage(BaseModel):
    results: list[BatchLine]
    # Pass back as ``cursor`` for the next page; null on the last one.
    next_cursor: int | None


class ImageLookup(RequestBody):
    # 900 hashes (67 bytes each as JSON) stay under the 64 KiB a JSON body may have.
    sha256: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(max_length=900)


async def _batch(services: Services, tenant: str, collection: str, batch_id: str) -> dict[str, Any]:
    await services.identities.require_collection(tenant, collection)
    batch = await services.batches.get(tenant, collection, batch_id)
    if batch is None:
        raise NotFound(f"batch {batch_id} does not exist in {collection!r}")
    return batch


@router.post("/collections/{collection}/batches", status_code=201, response_model=BatchBody)
async def create_batch(
    collection: CollectionPath,
    services: ServicesDep,
    tenant: WriteTenant,
    body: NewBatch | None = None,
) -> JSONResponse:
    """Open a batch (the gallery is made if it is new); add images in parts, then close
    it. The body is optional: without it the batch has no name and no callback."""
    body = body or NewBatch()
    callback = str(body.callback_url) if body.callback_url else None
    if callback is not None:
        await services.settings.egress().resolve(callback)  # 422 for its own network
    await services.identities.add_collection(tenant, collection)
    batch = await services.batches.create(tenant, collection, body.name, callback)
    return JSONResponse(
        batch,
        status_code=201,
        headers={"Location": f"/v1/collections/{collection}/batches/{batch['id']}"},
    )


@router.get(
    "/collections/{collection}/batches",
    response_model=BatchList,
    response_model_exclude_unset=True,
)
async def list_batches(
    collection: CollectionPath, services: ServicesDep, tenant: ReadTenant
) -> dict[str, Any]:
    await services.identities.require_collection(tenant, collection)
    return {"batches": await services.batches.all(tenant, collection)}


@router.get(
    "/collections/{collection}/batches/{batch_id}",
    response_model=BatchBody,
    response_model_exclude_unset=True,
)
async def get_batch(
    collection: CollectionPath, batch_id: UuidPath, services: ServicesDep, tenant: ReadTenant
) -> dict[str, Any]:
    """State, counts and progress."""
    return await _batch(services, tenant, collection, batch_id)


@router.post(
    "/collections/{collection}/batches/{batch_id}/images",
    status_code=202,
    response_model=AddedImages,
    responses=CONFLICT,
)
async def add_images(
    collection: CollectionPath,
    batch_id: UuidPath,
    services: ServicesDep,
    tenant: WriteTenant,
    image: Annotated[list[UploadFile], File(description="One or more images")],
) -> JSONResponse:
    """Add images to an open batch. An image already submitted to this gallery (same
    sha256, in any batch) is reported as a duplicate and not processed again."""
    settings = services.settings
    if len(image) > settings.max_images_per_batch_request:
        raise InvalidInput(
            f"{len(image)} images sent; at most {settings.max_images_per_batch_request} per request"
        )
    batch = await _batch(services, tenant, collection, batch_id)
    if batch["status"] != "open":
        raise Conflict(f"batch {batch_id} is {batch['status']}; open a new batch")
    await ensure_room(services.redis, settings, batch=True)
    keep_crops = (await services.identities.collection(tenant, collection))["keep_crops"]
    accepted, duplicates, refused = [], [], []
    for index, upload in enumerate(image):
        name = upload.filename or f"image{index}"
        try:
            data = await read_image(upload, settings)
        except FaceRecError as exc:
            refused.append({"name": name, "problem": _problem(exc)})
            continue
        digest = hashlib.sha256(data).hexdigest()
        admitted = await services.batches.admit(tenant, collection, batch_id, digest)
        if admitted == Admission.NOT_OPEN:
            raise Conflict(f"batch {batch_id} was closed while this part was being added")
        if admitted == Admission.DUPLICATE:
            duplicates.append({"name": name, "sha256": digest})
            continue
        try:
            params = JobParams(collection=collection, batch_id=batch_id, keep_crops=keep_crops)
            job_id = await _submit(services, tenant, params, name, digest, data)
        except BaseException:
            # Not sent: the image must not count as submitted, or the batch would never end.
            await services.batches.withdraw(tenant, collection, batch_id, digest)
            raise
        accepted.append({"name": name, "sha256": digest, "job_id": job_id})
    return JSONResponse(
        {"batch_id": batch_id, "accepted": accepted, "duplicates": duplicates, "refused": refused},
        status_code=202,
    )


async def _submit(
    services: Services,
    tenant: str,
    params: JobParams,
    name: str,
    digest: str,
    data: bytes,
) -> str:
    job_id = sortable_id()
    current_job.set(job_id)
    msg = PipelineMessage(
        job_id=job_id,
        kind=JobKind.BATCH,
        tenant=tenant,
        params=params,
        images=[ImageRef(index=0, name=name, sha256=digest)],
    )
    # Batch images may wait behind a long backlog: they live as long as a job record.
    await services.jobs.submit(
        job_id,
        JobKind.BATCH.value,
        tenant,
        Task.DETECT,
        msg.to_task(),
        [data],
        priority=BATCH_PRIORITY,
        image_ttl_s=services.settings.job_ttl_s,
    )
    return job_id


def _problem(exc: FaceRecError) -> dict[str, Any]:
    return problem_body(exc.code, exc.title, exc.detail, STATUS_BY_CODE.get(exc.code, 422))


@router.post(
    "/collections/{collection}/batches/{batch_id}/close",
    response_model=BatchBody,
    responses=CONFLICT,
    response_model_exclude_unset=True,
)
async def close_batch(
    collection: CollectionPath,
    batch_id: UuidPath,
    services: ServicesDep,
    tenant: WriteTenant,
    audit: Audit,
) -> dict[str, Any]:
    """No more images: the batch is done once every image has finished."""
    await _batch(services, tenant, collection, batch_id)
    finished = await services.batches.close(batch_id)
    await audit.record(AuditAction.BATCH_CLOSED, collection=collection, batch_id=batch_id)
    if finished:
        # Finished already: the workers will not see it end, so regroup the faces now.
        await call_indexer(services, IndexCallOp.CLUSTER, tenant, collection)
    return await _batch(services, tenant, collection, batch_id)


@router.post(
    "/collections/{collection}/batches/{batch_id}/cancel",
    response_model=BatchBody,
    responses=CONFLICT,
    response_model_exclude_unset=True,
)
async def cancel_batch(
    collection: CollectionPath,
    batch_id: UuidPath,
    services: ServicesDep,
    tenant: WriteTenant,
    audit: Audit,
) -> dict[str, Any]:
    """Stop an open or closed batch: no more images are taken; images still queued end as
    failed with ``batch-cancelled`` when a worker reaches them, and nothing of them is
    stored. What was processed stays (results, faces, people). No callback is sent. A
    finished batch cannot be cancelled (409)."""
    batch = await _batch(services, tenant, collection, batch_id)
    before = await services.batches.cancel(batch_id)
    if before not in ("open", "closed", "cancelled"):
        raise Conflict(f"batch {batch_id} is {batch['status']}; only an unfinished one can be")
    await audit.record(AuditAction.BATCH_CANCELLED, collection=collection, batch_id=batch_id)
    return await _batch(services, tenant, collection, batch_id)


@router.delete("/collections/{collection}/batches/{batch_id}", response_model=BatchErased)
async def delete_batch(
    collection: CollectionPath,
    batch_id: UuidPath,
    services: ServicesDep,
    tenant: WriteTenant,
    audit: Audit,
) -> dict[str, Any]:
    """Delete a batch and what it added: it is cancelled first (images still queued are
    dropped), then its unassigned faces are erased from the index (faces already named into
    an identity stay with it), its results are deleted and its images forgotten, so the
    same files can be sent again."""
    await _batch(services, tenant, collection, batch_id)
    # Cancelled before the faces are erased: an image still queued stores nothing later.
    await services.batches.cancel(batch_id)
    erased = await audit.around(
        AuditAction.BATCH_DELETED,
        call_indexer(
            services, IndexCallOp.DELETE_BATCH_FACES, tenant, collection, batch_id=batch_id
        ),
        collection=collection,
        batch_id=batch_id,
    )
    forgotten = await services.batches.delete(tenant, collection, batch_id)
    return {
        "id": batch_id,
        "deleted_faces": erased["deleted"],
        "remaining_faces": erased["remaining"],
        "forgotten_images": forgotten,
    }


@router.get("/collections/{collection}/batches/{batch_id}/results")
async def batch_results(
    collection: CollectionPath,
    batch_id: UuidPath,
    services: ServicesDep,
    tenant: ReadTenant,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        int, Query(ge=0, le=MAX_RESULTS_CURSOR, description="next_cursor of the previous page")
    ] = 0,
) -> BatchResultsPage:
    """Per-image results in the order images finished."""
    await _batch(services, tenant, collection, batch_id)
    results, next_cursor = await services.batches.results(batch_id, limit, cursor)
    lines = [BatchLine.model_validate(result) for result in results]
    for line in lines:
        if line.error:
            line.error = stored_problem(line.error)
    return BatchResultsPage(results=lines, next_cursor=next_cursor)


@router.post("/collections/{collection}/images/lookup", response_model=KnownImages)
async def lookup_images(
    collection: CollectionPath, body: ImageLookup, services: ServicesDep, tenant: ReadTenant
) -> dict[str, Any]:
    """Which of these image digests were already submitted to the gallery (so a client
    resuming an import need not send them again)."""
    await services.identities.require_collection(tenant, collection)
    return {"known": await services.batches.known(tenant, collection, body.sha256)}
