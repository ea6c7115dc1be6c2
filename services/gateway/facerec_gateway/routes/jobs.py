from typing import Annotated

from facerec_common.logs import current_job
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from facerec_gateway.auth import ReadTenant
from facerec_gateway.deps import ServicesDep
from facerec_gateway.jobs import AnyJobBody
from facerec_gateway.problems import JobNotFound
from facerec_gateway.responses import answer, job_responses

router = APIRouter(prefix="/v1", tags=["jobs"])

WaitQuery = Annotated[
    float,
    Query(ge=0, description="Seconds to wait for the job to finish (capped by the server)"),
]


@router.get("/jobs/{job_id}", response_model=None, responses=job_responses(AnyJobBody))
async def get_job(
    job_id: str, services: ServicesDep, tenant: ReadTenant, wait: WaitQuery = 0
) -> JSONResponse:
    """A job's status (queued, running, done, failed) and, once done, its result."""
    current_job.set(job_id)  # the access log line names the job
    job = await services.waiter.wait(services.jobs, job_id, min(wait, services.settings.max_wait_s))
    if job is None or job.tenant != tenant:
        raise JobNotFound(f"job {job_id} does not exist or has expired")
    return answer(job, problem_on_failure=False)
