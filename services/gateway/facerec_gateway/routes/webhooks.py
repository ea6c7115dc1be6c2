"""The secret batch callbacks are signed with."""

from typing import Any

from fastapi import APIRouter

from facerec_gateway.audit import Audit, AuditAction
from facerec_gateway.auth import AdminKey
from facerec_gateway.bodies import WebhookSecret
from facerec_gateway.deps import ServicesDep

router = APIRouter(prefix="/v1", tags=["batches"])


@router.get("/webhook-secret", response_model=WebhookSecret)
async def webhook_secret(key: AdminKey, services: ServicesDep) -> dict[str, Any]:
    """The secret batch callbacks are signed with (HMAC-SHA256); made on first use."""
    return {"secret": await services.webhooks.get(key.tenant)}


@router.post("/webhook-secret", response_model=WebhookSecret)
async def rotate_webhook_secret(
    key: AdminKey, services: ServicesDep, audit: Audit
) -> dict[str, Any]:
    secret = await services.webhooks.rotate(key.tenant)
    await audit.record(AuditAction.WEBHOOK_SECRET_ROTATED)
    return {"secret": secret}
