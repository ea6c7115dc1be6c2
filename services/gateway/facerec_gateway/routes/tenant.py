from typing import Any

from fastapi import APIRouter

from facerec_gateway import erasure
from facerec_gateway.audit import Audit, AuditAction
from facerec_gateway.auth import AdminKey
from facerec_gateway.bodies import TenantErased
from facerec_gateway.deps import ServicesDep

router = APIRouter(prefix="/v1", tags=["tenant"])


@router.delete("/tenant", response_model=TenantErased)
async def erase_tenant(key: AdminKey, services: ServicesDep, audit: Audit) -> dict[str, Any]:
    """Erase the tenant: every gallery, identity and face vector, then every key. Its
    audit trail stays: it is the record of this erasure."""
    return await audit.around(
        AuditAction.TENANT_DELETED, erasure.erase_tenant(services, key.tenant)
    )
