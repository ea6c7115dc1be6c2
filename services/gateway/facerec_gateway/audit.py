"""The audit trail: every admin and erasure action of a tenant, one record each, in a Redis
stream per tenant (``names.audit_key``).

A record says which key acted (its public prefix; ``operator`` for ``facerec-keys``,
``bootstrap`` for the start-up key), when, what it did, on what (ids only: galleries,
identities, faces, batches, people, keys, jobs) and the outcome, with counts where the
action erased something. It never holds a face, a vector, an image or a person's name or
metadata, so erasing a person leaves only the identity id in the trail. Nothing but age
removes a record: the stream is trimmed to the retention on every write and read, and
erasing the tenant keeps it (it is the record of that erasure).
"""

import json
import logging
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import redis.asyncio as aioredis
from facerec_common.errors import FaceRecError, InvalidInput
from facerec_common.identities import decoded, text
from facerec_common.names import audit_key
from fastapi import Depends, Request
from pydantic import BaseModel

from facerec_gateway.auth import authenticate
from facerec_gateway.deps import ServicesDep

log = logging.getLogger(__name__)

T = TypeVar("T")

# A stream id: milliseconds, a dash, a sequence number; each below 2**64.
# A stream id (milliseconds-sequence), bounded so both parts stay inside 64 bits: every
# cursor the pattern admits is one Redis takes.
CURSOR_PATTERN = r"^[0-9]{1,15}-[0-9]{1,18}$"
_CURSOR = re.compile(CURSOR_PATTERN)
# Target ids are ids; anything longer is cut, never stored whole.
_MAX_TARGET_CHARS = 128
TARGET_FIELDS = (
    "collection",
    "identity_id",
    "face_id",
    "batch_id",
    "person_id",
    "key_prefix",
    "job_id",
)

OPERATOR = "operator"  # facerec-keys, run by someone with access to Redis
BOOTSTRAP = "bootstrap"  # the gateway at start-up


class AuditAction(StrEnum):
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    TENANT_DELETED = "tenant.deleted"
    COLLECTION_DELETED = "collection.deleted"
    # Every face vector of a gallery leaves or enters the service.
    COLLECTION_EXPORTED = "collection.exported"
    COLLECTION_IMPORTED = "collection.imported"
    ARCHIVE_SECRET_READ = "archive_secret.read"
    THRESHOLD_CHANGED = "collection.threshold_changed"
    QUALITY_FILTER_CHANGED = "collection.quality_filter_changed"
    KEEP_CROPS_CHANGED = "collection.keep_crops_changed"
    # A gallery's model migration: started, cut over, rolled back, finished.
    MIGRATION_STARTED = "migration.started"
    MIGRATION_CUT_OVER = "migration.cut_over"
    MIGRATION_ROLLED_BACK = "migration.rolled_back"
    MIGRATION_FINISHED = "migration.finished"
    IDENTITY_DELETED = "identity.deleted"
    FACE_DELETED = "face.deleted"
    PERSON_FACE_REJECTED = "person.face_rejected"
    BATCH_CLOSED = "batch.closed"
    BATCH_CANCELLED = "batch.cancelled"
    BATCH_DELETED = "batch.deleted"
    WEBHOOK_SECRET_ROTATED = "webhook_secret.rotated"
    DEAD_LETTER_REDRIVEN = "dead_letter.redriven"


class Outcome(StrEnum):
    OK = "ok"
    # Erased, but the index still counted faces of it afterwards.
    INCOMPLETE = "incomplete"
    FAILED = "failed"


Detail = dict[str, str | int | float | bool | None]


def parse_cursor(cursor: str) -> str:
    """A page cursor is a stream id this API handed out; anything else is refused here,
    never sent to Redis."""
    if _CURSOR.match(cursor) is None:
        raise InvalidInput("cursor must be a next_cursor from an earlier page")
    return cursor


class AuditLog:
    def __init__(self, client: "aioredis.Redis", retention_days: int) -> None:
        self._redis = client
        self.retention_s = retention_days * 86400

    def _oldest_kept(self) -> str:
        return f"{int((time.time() - self.retention_s) * 1000)}-0"

    async def record(
        self,
        tenant: str,
        action: AuditAction,
        actor: str,
        outcome: Outcome = Outcome.OK,
        detail: Detail | None = None,
        **target: str,
    ) -> str:
        unknown = set(target) - set(TARGET_FIELDS)
        if unknown:
            raise ValueError(f"not an audit target: {sorted(unknown)}")
        fields: dict[Any, Any] = {
            "action": str(action),
            "actor": actor,
            "outcome": str(outcome),
            "at": repr(time.time()),
            "target": json.dumps({k: str(v)[:_MAX_TARGET_CHARS] for k, v in target.items()}),
            "detail": json.dumps(detail or {}),
        }
        entry = await self._redis.xadd(
            audit_key(tenant), fields, minid=self._oldest_kept(), approximate=False
        )
        return text(entry)

    async def page(
        self, tenant: str, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; ``cursor``: the id of the last record of the page before."""
        key = audit_key(tenant)
        await self._redis.xtrim(key, minid=self._oldest_kept(), approximate=False)
        if cursor is not None and set(parse_cursor(cursor)) <= {"0", "-"}:
            return [], None  # nothing is older than the first possible id
        newest = f"({cursor}" if cursor is not None else "+"
        entries = await self._redis.xrevrange(key, max=newest, min="-", count=limit + 1) or []
        records = [_record(text(entry_id), decoded(fields or {})) for entry_id, fields in entries]
        more = len(records) > limit
        records = records[:limit]
        return records, (records[-1]["id"] if more else None)


def _record(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    return {
        "id": entry_id,
        "at": float(fields.get("at", 0)),
        "action": fields.get("action", ""),
        "actor": fields.get("actor", ""),
        "outcome": fields.get("outcome", ""),
        "target": json.loads(fields.get("target") or "{}"),
        "detail": json.loads(fields.get("detail") or "{}"),
    }


def _counts(result: Any) -> tuple[Outcome, Detail]:
    """Outcome and counts of an erasure's answer (numbers only: no names, no faces)."""
    if isinstance(result, BaseModel):
        result = result.model_dump()
    if not isinstance(result, dict):
        return Outcome.OK, {}
    counts: Detail = {
        k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    remaining = result.get("remaining_faces", result.get("remaining", 0))
    return (Outcome.INCOMPLETE if remaining else Outcome.OK), counts


@dataclass
class AuditTrail:
    """The audit trail as one request writes it: its tenant and acting key are known."""

    log: AuditLog
    tenant: str
    actor: str

    async def record(
        self,
        action: AuditAction,
        outcome: Outcome = Outcome.OK,
        detail: Detail | None = None,
        **target: str,
    ) -> None:
        await self.log.record(self.tenant, action, self.actor, outcome, detail, **target)

    async def around(self, action: AuditAction, work: Awaitable[T], **target: str) -> T:
        """Await ``work`` (an erasure) and record it: its counts and whether anything was
        left, or that it failed (then the error goes on to the client)."""
        try:
            result = await work
        except Exception as exc:
            code = exc.code if isinstance(exc, FaceRecError) else type(exc).__name__
            try:
                await self.record(action, Outcome.FAILED, {"error": code}, **target)
            except Exception:  # Redis away: the original error says more
                log.exception("could not record %s as failed in the audit trail", action)
            raise
        outcome, counts = _counts(result)
        await self.record(action, outcome, counts, **target)
        return result


async def audit_trail(request: Request, services: ServicesDep) -> AuditTrail:
    key = await authenticate(request, services)  # once per request: cached on its state
    return AuditTrail(
        AuditLog(services.redis, services.settings.audit_retention_days),
        key.tenant,
        f"frk_{key.prefix}",
    )


Audit = Annotated[AuditTrail, Depends(audit_trail)]
