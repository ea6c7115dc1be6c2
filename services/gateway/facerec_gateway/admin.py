"""Index operations the gateway needs an answer to now: counts, erasure, people."""

from typing import Any

from facerec_common.errors import (
    CollectionNotFound,
    FaceNotFound,
    FaceRecError,
    IdentityNotFound,
    IndexUnavailable,
    InvalidInput,
    NotFound,
)
from facerec_common.jobs import JobStatus
from facerec_common.messages import AdminMessage, AdminOp
from facerec_common.names import Task

from facerec_gateway.deps import Services
from facerec_gateway.ids import sortable_id


class IndexOperationFailed(IndexUnavailable):
    retryable = False


async def index_admin(
    services: Services,
    op: AdminOp,
    tenant: str,
    collection: str | None = None,
    identity_id: str | None = None,
    **targets: Any,
) -> dict[str, Any]:
    """Run ``op`` in the indexer and wait for its answer. ``targets``: the other fields of
    ``AdminMessage`` (person_id, face_id, target_id, identity_ids, batch_id)."""
    job_id = sortable_id()
    msg = AdminMessage(
        job_id=job_id,
        op=op,
        tenant=tenant,
        collection=collection,
        identity_id=identity_id,
        **targets,
    )
    await services.jobs.submit(job_id, f"index.{op.value}", tenant, Task.INDEX_ADMIN, msg.to_task())
    job = await services.waiter.wait(services.jobs, job_id, services.settings.index_timeout_s)
    if job is None or not job.finished:
        raise IndexUnavailable(
            f"the indexer did not answer within {services.settings.index_timeout_s} s"
        )
    if job.status is JobStatus.FAILED or job.result is None:
        error = job.error or {}
        detail = error.get("detail", "unknown error")
        # A refusal (no such person, bad input) keeps its meaning; anything else is the
        # index failing.
        refusal = _REFUSALS.get(error.get("code", ""))
        if refusal is not None:
            raise refusal(detail)
        raise IndexOperationFailed(f"the index operation {op.value} failed: {detail}")
    return job.result


_REFUSALS: dict[str, type[FaceRecError]] = {
    NotFound.code: NotFound,
    IdentityNotFound.code: IdentityNotFound,
    CollectionNotFound.code: CollectionNotFound,
    FaceNotFound.code: FaceNotFound,
    InvalidInput.code: InvalidInput,
}
