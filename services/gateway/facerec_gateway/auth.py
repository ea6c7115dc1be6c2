"""Who is calling: the API key from ``X-API-Key`` or ``Authorization: Bearer``, its tenant
and scopes, and its request rate."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from facerec_gateway.deps import CollectionPath, Services, ServicesDep
from facerec_gateway.keys import ApiKey, KeyScope
from facerec_gateway.problems import Forbidden, RateLimited, Unauthorized

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="facerec"'}

# Declared so that the OpenAPI document names both ways of sending a key (and /docs shows
# its Authorize button); the key itself is read by ``presented_key``, so errors stay
# problem+json.
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="An API key, frk_...; `start.sh` prints one for the default tenant",
    auto_error=False,
)
BEARER = HTTPBearer(
    scheme_name="Bearer",
    description="The same API key as Authorization: Bearer frk_...",
    auto_error=False,
)


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return None


async def authenticate(request: Request, services: Services) -> ApiKey:
    # Once per request: several dependencies may ask, and each ask would count against
    # the key's rate.
    known: ApiKey | None = getattr(request.state, "api_key", None)
    if known is not None:
        return known
    raw = presented_key(request)
    if raw is None:
        raise Unauthorized(
            "send an API key in the X-API-Key header or as Authorization: Bearer", _CHALLENGE
        )
    key = await services.keys.authenticate(raw)
    if key is None:
        raise Unauthorized("the API key is unknown or has been revoked", _CHALLENGE)
    if key.expired():
        expiry = datetime.fromtimestamp(key.expires_at or 0, UTC).isoformat(timespec="seconds")
        raise Unauthorized(f"the API key expired at {expiry}", _CHALLENGE)
    limit = key.rate_limit_per_minute or services.settings.rate_limit_per_minute
    retry_after = await services.limiter.retry_after(key.prefix, limit)
    if retry_after is not None:
        raise RateLimited(
            f"this key may make {limit} requests a minute", {"Retry-After": str(retry_after)}
        )
    request.state.api_key = key
    return key


def requiring(scope: KeyScope) -> Callable[..., Awaitable[ApiKey]]:
    async def dependency(
        request: Request,
        services: ServicesDep,
        _header: Annotated[str | None, Security(API_KEY_HEADER)] = None,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> ApiKey:
        key = await authenticate(request, services)
        if scope not in key.scopes:
            raise Forbidden(f"this key lacks the {scope.value!r} scope")
        return key

    return dependency


ReadKey = Annotated[ApiKey, Depends(requiring(KeyScope.READ))]
AdminKey = Annotated[ApiKey, Depends(requiring(KeyScope.ADMIN))]


def tenant_requiring(scope: KeyScope) -> Callable[[ApiKey], Awaitable[str]]:
    async def dependency(key: Annotated[ApiKey, Depends(requiring(scope))]) -> str:
        return key.tenant

    return dependency


# The tenant of a key that holds the scope: what most routes need.
ReadTenant = Annotated[str, Depends(tenant_requiring(KeyScope.READ))]
WriteTenant = Annotated[str, Depends(tenant_requiring(KeyScope.WRITE))]


async def existing_collection(
    collection: CollectionPath, request: Request, services: ServicesDep
) -> None:
    """404 unless the caller's tenant has the gallery (after the key is checked, so that a
    stranger learns nothing)."""
    key = await authenticate(request, services)
    await services.identities.require_collection(key.tenant, collection)
