"""Index operations the gateway needs an answer to now: counts and erasure."""

from typing import Any

from facerec_common.errors import IndexUnavailable
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
) -> dict[str, Any]:
    job_id = sortable_id()
    msg = AdminMessage(
        job_id=job_id, op=op, tenant=tenant, collection=collection, identity_id=identity_id
    )
    await services.jobs.submit(job_id, f"index.{op.value}", tenant, Task.INDEX_ADMIN, msg.to_task())
    job = await services.waiter.wait(services.jobs, job_id, services.settings.index_timeout_s)
    if job is None or not job.finished:
        raise IndexUnavailable(
            f"the indexer did not answer within {services.settings.index_timeout_s} s"
        )
    if job.status is JobStatus.FAILED or job.result is None:
        detail = (job.error or {}).get("detail", "unknown error")
        raise IndexOperationFailed(f"the index operation {op.value} failed: {detail}")
    return job.result
