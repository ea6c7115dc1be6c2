"""The bootstrap admin key at start-up: created once, for a tenant without an admin key, and
never again once revoked; the log says which."""

import logging
from datetime import UTC, datetime

from facerec_gateway.audit import BOOTSTRAP, AuditAction, AuditLog
from facerec_gateway.deps import Services
from facerec_gateway.keys import KEY_PATTERN, BootstrapOutcome

log = logging.getLogger(__name__)


def _when(value: str | None) -> str:
    if not value:
        return "an unknown time"
    return datetime.fromtimestamp(float(value), UTC).isoformat(timespec="seconds")


async def bootstrap_admin_key(services: Services) -> BootstrapOutcome | None:
    settings = services.settings
    if settings.bootstrap_admin_key is None:
        return None
    key = settings.bootstrap_admin_key.get_secret_value()
    tenant = settings.bootstrap_tenant
    outcome, record = await services.keys.bootstrap(tenant, key)
    match = KEY_PATTERN.match(key)
    prefix = f"frk_{match.group(1)}" if match else "?"
    if outcome is BootstrapOutcome.CREATED and record is not None:
        log.info("bootstrap admin key %s created for tenant %r", prefix, tenant)
        await AuditLog(services.redis, settings.audit_retention_days).record(
            tenant,
            AuditAction.KEY_CREATED,
            BOOTSTRAP,
            detail={"name": record.name, "scopes": ",".join(sorted(record.scopes))},
            key_prefix=prefix,
        )
    elif outcome is BootstrapOutcome.PRESENT:
        log.info("bootstrap admin key %s of tenant %r already present", prefix, tenant)
    elif outcome is BootstrapOutcome.REVOKED:
        fate = await services.keys.bootstrap_fate(key)
        log.warning(
            "bootstrap admin key %s of tenant %r was revoked at %s; not re-created "
            "(make keys with facerec-keys create and unset FACEREC_GATEWAY_BOOTSTRAP_ADMIN_KEY)",
            prefix,
            tenant,
            _when(fate.get("revoked_at")),
        )
    elif outcome is BootstrapOutcome.TENANT_HAS_ADMIN:
        log.warning(
            "tenant %r has an admin key already; bootstrap admin key %s not created",
            tenant,
            prefix,
        )
    else:
        log.error("bootstrap admin key %s not created: another key has its prefix", prefix)
    return outcome
