from typing import Any

from fastapi import APIRouter

from facerec_gateway import erasure
from facerec_gateway.auth import AdminKey
from facerec_gateway.bodies import TenantErased
from facerec_gateway.deps import ServicesDep

router = APIRouter(prefix="/v1", tags=["tenant"])


@router.delete("/tenant", response_model=TenantErased)
async def erase_tenant(key: AdminKey, services: ServicesDep) -> dict[str, Any]:
    """Erase the tenant: every gallery, identity and face vector, then every key."""
    return await erasure.erase_tenant(services, key.tenant)
