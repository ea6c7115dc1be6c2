import time
from typing import Annotated, Any

from facerec_common.errors import NotFound
from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from facerec_gateway.audit import Audit, AuditAction
from facerec_gateway.auth import AdminKey
from facerec_gateway.bodies import KeyBody, KeyRevoked, NewKeyBody
from facerec_gateway.deps import NAME_PATTERN, ServicesDep
from facerec_gateway.fields import RequestBody
from facerec_gateway.keys import KeyScope
from facerec_gateway.problems import Forbidden

router = APIRouter(prefix="/v1", tags=["keys"])

# A key's public prefix, with or without its frk_.
KeyPrefixPath = Annotated[str, Path(pattern=r"^(frk_)?[a-z0-9]{10}$")]


class NewKey(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[KeyScope] = Field(min_length=1)
    # Keys are created for the caller's own tenant; naming another one is refused (403).
    tenant: str | None = Field(None, pattern=NAME_PATTERN)
    rate_limit_per_minute: int | None = Field(None, ge=1, strict=True)
    # The key is refused (401, "expired") this many seconds after it is made.
    expires_in_s: int | None = Field(None, ge=1, le=10 * 366 * 86400, strict=True)


class KeyList(BaseModel):
    keys: list[KeyBody]


@router.post("/keys", status_code=201, response_model=NewKeyBody)
async def create_key(
    body: NewKey, key: AdminKey, services: ServicesDep, audit: Audit
) -> JSONResponse:
    """A new key for this tenant. The key itself is in this answer only; store it."""
    if body.tenant is not None and body.tenant != key.tenant:
        raise Forbidden(f"this key belongs to tenant {key.tenant!r}, not {body.tenant!r}")
    expires_at = time.time() + body.expires_in_s if body.expires_in_s else None
    record, secret = await services.keys.create(
        key.tenant, set(body.scopes), body.name, body.rate_limit_per_minute, expires_at=expires_at
    )
    scopes = ",".join(sorted(record.scopes))
    detail = {"name": record.name, "scopes": scopes, "expires_at": expires_at}
    await audit.record(AuditAction.KEY_CREATED, detail=detail, key_prefix=f"frk_{record.prefix}")
    return JSONResponse({**record.body(), "key": secret}, status_code=201)


@router.get("/keys", response_model=KeyList)
async def list_keys(
    key: AdminKey,
    services: ServicesDep,
    prefix: Annotated[str | None, Query(max_length=20, description="Only keys starting so")] = None,
) -> dict[str, Any]:
    return {"keys": [k.body() for k in await services.keys.list(key.tenant, prefix)]}


@router.delete("/keys/{prefix}", response_model=KeyRevoked)
async def revoke_key(
    prefix: KeyPrefixPath, key: AdminKey, services: ServicesDep, audit: Audit
) -> dict[str, Any]:
    if not await services.keys.revoke(key.tenant, prefix):
        raise NotFound(f"no key {prefix!r} in this tenant")
    await audit.record(AuditAction.KEY_REVOKED, key_prefix=f"frk_{prefix.removeprefix('frk_')}")
    return {"prefix": prefix, "revoked": True}
