"""Who is calling: the API key from ``X-API-Key`` or ``Authorization: Bearer``, its tenant
and scopes, and its request rate."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from facerec_gateway.deps import Services, ServicesDep
from facerec_gateway.keys import ApiKey, KeyScope
from facerec_gateway.problems import Forbidden, RateLimited, Unauthorized

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="facerec"'}


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return None


async def authenticate(request: Request, services: Services) -> ApiKey:
    raw = presented_key(request)
    if raw is None:
        raise Unauthorized(
            "send an API key in the X-API-Key header or as Authorization: Bearer", _CHALLENGE
        )
    key = await services.keys.authenticate(raw)
    if key is None:
        raise Unauthorized("the API key is unknown or has been revoked", _CHALLENGE)
    limit = key.rate_limit_per_minute or services.settings.rate_limit_per_minute
    retry_after = await services.limiter.retry_after(key.prefix, limit)
    if retry_after is not None:
        raise RateLimited(
            f"this key may make {limit} requests a minute", {"Retry-After": str(retry_after)}
        )
    return key


def requiring(scope: KeyScope) -> Callable[[Request, Services], Awaitable[ApiKey]]:
    async def dependency(request: Request, services: ServicesDep) -> ApiKey:
        key = await authenticate(request, services)
        if scope not in key.scopes:
            raise Forbidden(f"this key lacks the {scope.value!r} scope")
        return key

    return dependency


ReadKey = Annotated[ApiKey, Depends(requiring(KeyScope.READ))]
WriteKey = Annotated[ApiKey, Depends(requiring(KeyScope.WRITE))]
AdminKey = Annotated[ApiKey, Depends(requiring(KeyScope.ADMIN))]


def tenant_requiring(scope: KeyScope) -> Callable[[ApiKey], Awaitable[str]]:
    async def dependency(key: Annotated[ApiKey, Depends(requiring(scope))]) -> str:
        return key.tenant

    return dependency


# The tenant of a key that holds the scope: what most routes need.
ReadTenant = Annotated[str, Depends(tenant_requiring(KeyScope.READ))]
WriteTenant = Annotated[str, Depends(tenant_requiring(KeyScope.WRITE))]
