from facerec_common.logs import current_job
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from facerec_gateway.auth import ReadTenant
from facerec_gateway.deps import JobIdPath, ServicesDep
from facerec_gateway.job_store import AnyJobBody
from facerec_gateway.problems import JobNotFound
from facerec_gateway.queries import WaitQuery
from facerec_gateway.responses import answer, job_responses

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.get("/jobs/{job_id}", response_model=None, responses=job_responses(AnyJobBody))
async def get_job(
    job_id: JobIdPath, services: ServicesDep, tenant: ReadTenant, wait: WaitQuery = 0
) -> JSONResponse:
    """A job's status (queued, running, done, failed) and, once done, its result."""
    current_job.set(job_id)  # the access log line names the job
    job = await services.waiter.wait(services.jobs, job_id, min(wait, services.settings.max_wait_s))
    if job is None or job.tenant != tenant:
        raise JobNotFound(f"job {job_id} does not exist or has expired")
    return answer(job, problem_on_failure=False)
