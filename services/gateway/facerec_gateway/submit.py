"""Turning an upload request into a pipeline job."""

import hashlib
from collections.abc import Sequence

from facerec_common.errors import InvalidInput
from facerec_common.logs import current_job
from facerec_common.messages import ImageRef, JobKind, JobParams, PipelineMessage
from facerec_common.names import Task
from fastapi import UploadFile
from fastapi.responses import JSONResponse

from facerec_gateway.deps import Services
from facerec_gateway.ids import sortable_id
from facerec_gateway.limits import ensure_room
from facerec_gateway.responses import job_response
from facerec_gateway.uploads import read_image


async def submit_images(
    services: Services,
    tenant: str,
    kind: JobKind,
    uploads: Sequence[UploadFile],
    params: JobParams,
    wait_s: float,
) -> JSONResponse:
    """Check every image, store them, send the detect task, answer per ``wait``."""
    if len(uploads) > services.settings.max_images_per_request:
        raise InvalidInput(
            f"{len(uploads)} images sent; at most {services.settings.max_images_per_request} "
            "per request"
        )
    await ensure_room(services.redis, services.settings)
    images = [await read_image(upload, services.settings) for upload in uploads]
    # Enrolled faces are known by their image's content, so a repeat is not stored twice.
    digests = (
        [hashlib.sha256(data).hexdigest() for data in images]
        if kind is JobKind.ENROLL
        else [None] * len(images)
    )
    job_id = sortable_id()
    current_job.set(job_id)  # for this request's log lines; the access log resets it
    msg = PipelineMessage(
        job_id=job_id,
        kind=kind,
        tenant=tenant,
        params=params,
        images=[
            ImageRef(index=i, name=upload.filename or f"image{i}", sha256=digest)
            for i, (upload, digest) in enumerate(zip(uploads, digests, strict=True))
        ],
    )
    await services.jobs.submit(job_id, kind.value, tenant, Task.DETECT, msg.to_task(), images)
    return await job_response(services, job_id, wait_s, problem_on_failure=True)
