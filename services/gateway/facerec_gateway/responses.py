"""How a job is answered: 200 with its result when finished in time, 202 otherwise, or the
job's problem when it failed during a request that waited for it."""

from typing import Any

from facerec_common.jobs import JobStatus
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from facerec_gateway.deps import Services
from facerec_gateway.job_store import Job
from facerec_gateway.problems import JobNotFound, problem_from_stored, stored_problem


async def job_response(
    services: Services, job_id: str, wait_s: float, problem_on_failure: bool
) -> JSONResponse:
    wait_s = min(wait_s, services.settings.max_wait_s)
    job = await services.waiter.wait(services.jobs, job_id, wait_s)
    if job is None:
        raise JobNotFound(f"job {job_id} does not exist or has expired")
    return answer(job, problem_on_failure)


def answer(job: Job, problem_on_failure: bool) -> JSONResponse:
    if job.status is JobStatus.FAILED and problem_on_failure and job.error is not None:
        return problem_from_stored(job.error, job_id=job.id)
    status = 200 if job.finished else 202
    headers = {} if job.finished else {"Location": f"/v1/jobs/{job.id}"}
    body = job.body()
    if job.error is not None:
        # The same fields as the problem the request would have had: type, code, status.
        body["error"] = stored_problem(job.error)
    return JSONResponse(body, status_code=status, headers=headers)


def job_responses(body: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI of an operation that answers a job (``body``: a ``JobBody`` of the job
    kind's result): 202 while it runs, 200 once it ended within ``wait``."""
    return {
        200: {"model": body, "description": "The job ended within wait: its result or error"},
        202: {"model": body, "description": "The job is queued or running; poll status_url"},
    }
