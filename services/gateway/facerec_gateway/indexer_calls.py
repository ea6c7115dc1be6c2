"""The indexer's calls the gateway needs an answer to now: counts, erasure, people. Only
the indexer opens the index, so each is a task on its queue and the answer a job record."""

from typing import Any

from facerec_common.errors import (
    ERRORS_BY_CODE,
    IndexUnavailable,
    InvalidInput,
    MigrationConflict,
    NotFound,
)
from facerec_common.jobs import JobStatus
from facerec_common.messages import IndexCall, IndexCallOp
from facerec_common.names import Task

from facerec_gateway.deps import Services
from facerec_gateway.ids import sortable_id


class IndexOperationFailed(IndexUnavailable):
    retryable = False


async def call_indexer(
    services: Services,
    op: IndexCallOp,
    tenant: str,
    collection: str | None = None,
    identity_id: str | None = None,
    **targets: Any,
) -> dict[str, Any]:
    """Run ``op`` in the indexer and wait for its answer. ``targets``: the other fields of
    ``IndexCall`` (person_id, face_id, target_id, identity_ids, batch_id)."""
    job_id = sortable_id()
    msg = IndexCall(
        job_id=job_id,
        op=op,
        tenant=tenant,
        collection=collection,
        identity_id=identity_id,
        **targets,
    )
    await services.jobs.submit(job_id, f"index.{op.value}", tenant, Task.INDEX_CALL, msg.to_task())
    job = await services.waiter.wait(services.jobs, job_id, services.settings.index_timeout_s)
    if job is None or not job.finished:
        raise IndexUnavailable(
            f"the indexer did not answer within {services.settings.index_timeout_s} s"
        )
    if job.status is JobStatus.FAILED or job.result is None:
        error = job.error or {}
        detail = error.get("detail", "unknown error")
        # A refusal (no such person, bad input, a migration step not possible now) keeps
        # its meaning; anything else is the index failing.
        refusal = ERRORS_BY_CODE.get(error.get("code", ""))
        if refusal is not None and issubclass(refusal, NotFound | InvalidInput | MigrationConflict):
            raise refusal(detail)
        raise IndexOperationFailed(f"the index operation {op.value} failed: {detail}")
    return job.result
