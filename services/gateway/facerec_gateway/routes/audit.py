"""The tenant's audit trail, newest first, for its admins."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from facerec_gateway.audit import CURSOR_PATTERN, AuditLog, Detail
from facerec_gateway.auth import AdminKey
from facerec_gateway.deps import ServicesDep

router = APIRouter(prefix="/v1", tags=["audit"])


class AuditTarget(BaseModel):
    """What the action was done to: ids only, never a name or a face."""

    collection: str | None = None
    identity_id: str | None = None
    face_id: str | None = None
    batch_id: str | None = None
    person_id: str | None = None
    key_prefix: str | None = None
    job_id: str | None = None


class AuditRecord(BaseModel):
    # The record's stream id: time in milliseconds and a sequence number.
    id: str
    at: float
    # key.created, key.revoked, tenant.deleted, collection.deleted, ... (see the README)
    action: str
    # The acting key's prefix; "operator" for facerec-keys, "bootstrap" for start-up.
    actor: str
    outcome: str  # ok, incomplete (faces remained after an erasure), failed
    target: AuditTarget
    # Counts of what was erased, a threshold's old and new value, a key's scopes.
    detail: Detail


class AuditPage(BaseModel):
    records: list[AuditRecord]
    # Pass back as ``cursor`` for the next (older) page; null on the last one.
    next_cursor: str | None


# A target lists only the ids its action had (no nulls for the rest).
@router.get("/audit", response_model=AuditPage, response_model_exclude_unset=True)
async def audit_trail(
    key: AdminKey,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Records per page")] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=34,
            pattern=CURSOR_PATTERN,
            description="next_cursor of the page before",
        ),
    ] = None,
) -> dict[str, Any]:
    """This tenant's admin and erasure actions, newest first: who (key prefix), when, what,
    on what, and the outcome. Kept for FACEREC_GATEWAY_AUDIT_RETENTION_DAYS."""
    trail = AuditLog(services.redis, services.settings.audit_retention_days)
    records, next_cursor = await trail.page(key.tenant, limit, cursor)
    return {"records": records, "next_cursor": next_cursor}
