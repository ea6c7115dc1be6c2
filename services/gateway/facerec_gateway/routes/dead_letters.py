"""Dead letters: jobs whose stage failed on every try, kept with their message so that an
admin can see why and send them again once the cause is fixed (a new model, more memory)."""

from typing import Any

import anyio
from facerec_common.deadletters import AsyncDeadLetters
from facerec_common.errors import NotFound
from fastapi import APIRouter

from facerec_gateway.audit import Audit, AuditAction
from facerec_gateway.auth import AdminKey
from facerec_gateway.bodies import DeadLetterList, Redriven
from facerec_gateway.deps import JobIdPath, ServicesDep

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])


@router.get("", response_model=DeadLetterList)
async def list_dead_letters(key: AdminKey, services: ServicesDep) -> dict[str, Any]:
    """The tenant's dead letters, newest first: job, stage, reason, tries."""
    letters = await AsyncDeadLetters(services.redis).list(key.tenant)
    return {"dead_letters": [letter.summary() for letter in letters]}


@router.post("/{job_id}/redrive", response_model=Redriven)
async def redrive_dead_letter(
    job_id: JobIdPath, key: AdminKey, services: ServicesDep, audit: Audit
) -> dict[str, Any]:
    """Send the job's failed stage again, with its tries counted from zero; the job is
    queued again and ends as any other."""
    store = AsyncDeadLetters(services.redis)
    letter = await store.take(key.tenant, job_id)
    if letter is None:
        raise NotFound(f"no dead letter for job {job_id!r} in this tenant")
    await store.requeue_job(letter, services.settings.job_ttl_s)
    await anyio.to_thread.run_sync(
        lambda: services.celery.send_task(letter.task, args=[letter.payload])
    )
    await audit.record(
        AuditAction.DEAD_LETTER_REDRIVEN, detail={"stage": letter.stage}, job_id=job_id
    )
    return {"job_id": job_id, "stage": letter.stage, "status": "queued"}
