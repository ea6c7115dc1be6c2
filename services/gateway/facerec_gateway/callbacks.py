"""Batch callbacks: when a batch finishes, its summary is POSTed to the batch's
``callback_url``, signed with the tenant's webhook secret, retried with backoff.

Due callbacks wait in a Redis sorted set (scored by when they are due), so they survive a
gateway restart and any gateway replica may send them. A sender leases an entry before
sending (moves it into the future), so two replicas never send it at once, and an entry
whose sender died is sent again when the lease runs out: delivery is at least once.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time

import httpx
import redis.asyncio as aioredis
from facerec_common.identities import decoded, text
from facerec_common.names import CALLBACKS_KEY, batch_key, webhook_secret_key
from redis.exceptions import RedisError

from facerec_gateway.batch_store import batch_body
from facerec_gateway.egress import CallbackRefused, EgressPolicy

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Facerec-Signature"
TIMESTAMP_HEADER = "X-Facerec-Timestamp"

# KEYS: callbacks; ARGV: batch id, now, lease end. 1 if this caller now holds the entry.
_LEASE_SCRIPT = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if due and tonumber(due) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``timestamp.body`` under the secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookSecrets:
    def __init__(self, client: "aioredis.Redis") -> None:
        self._redis = client

    async def get(self, tenant: str) -> str:
        """The tenant's secret, made on first use."""
        await self._redis.set(webhook_secret_key(tenant), secrets.token_urlsafe(32), nx=True)
        return text(await self._redis.get(webhook_secret_key(tenant)))

    async def rotate(self, tenant: str) -> str:
        secret = secrets.token_urlsafe(32)
        await self._redis.set(webhook_secret_key(tenant), secret)
        return secret

    async def erase(self, tenant: str) -> None:
        await self._redis.delete(webhook_secret_key(tenant))


class CallbackSender:
    def __init__(
        self,
        client: "aioredis.Redis",
        webhook_secrets: WebhookSecrets,
        attempts: int,
        backoff_s: float,
        timeout_s: float,
        egress: EgressPolicy,
    ) -> None:
        self._redis = client
        self._egress = egress
        self._secrets = webhook_secrets
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._timeout_s = timeout_s
        self._lease = client.register_script(_LEASE_SCRIPT)

    async def run(self, poll_s: float = 0.5) -> None:
        """Runs for the gateway's lifetime."""
        async with httpx.AsyncClient(timeout=self._timeout_s) as http:
            while True:
                try:
                    now = time.time()
                    due = await self._redis.zrangebyscore(CALLBACKS_KEY, "-inf", now, 0, 20)
                    for raw in due:
                        batch_id = text(raw)
                        lease_end = now + self._timeout_s + 30
                        if await self._lease(keys=[CALLBACKS_KEY], args=[batch_id, now, lease_end]):
                            await self._send(http, batch_id)
                except (RedisError, OSError) as exc:
                    log.warning("callbacks: %s", exc)
                await asyncio.sleep(poll_s)

    async def _send(self, http: httpx.AsyncClient, batch_id: str) -> None:
        fields = decoded(await self._redis.hgetall(batch_key(batch_id)))
        if not fields or not fields.get("callback_url"):
            await self._redis.zrem(CALLBACKS_KEY, batch_id)
            return
        body = json.dumps({"event": "batch.done", "batch": batch_body(batch_id, fields)}).encode()
        timestamp = str(int(time.time()))
        secret = await self._secrets.get(fields["tenant"])
        headers = {
            "content-type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        attempt = int(fields.get("callback_attempts", 0) or 0) + 1
        error = ""
        try:
            response = await self._egress.pinned_post(http, fields["callback_url"], body, headers)
            if response.is_success:
                await self._settle(batch_id, "delivered", attempt, "")
                log.info("batch %s: callback delivered (attempt %d)", batch_id, attempt)
                return
            error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except CallbackRefused as exc:  # resolves elsewhere now: no retry will change that
            await self._settle(batch_id, "failed", attempt, f"refused: {exc.detail}")
            log.warning("batch %s: callback refused: %s", batch_id, exc.detail)
            return
        if attempt >= self._attempts:
            await self._settle(batch_id, "failed", attempt, error)
            log.warning("batch %s: callback failed after %d attempts: %s", batch_id, attempt, error)
            return
        delay = self._backoff_s * 2 ** (attempt - 1)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                batch_key(batch_id),
                mapping={
                    "callback_status": "retrying",
                    "callback_attempts": attempt,
                    "callback_error": error,
                },
            )
            pipe.zadd(CALLBACKS_KEY, {batch_id: time.time() + delay})
            await pipe.execute()
        log.info(
            "batch %s: callback attempt %d: %s; again in %.0f s", batch_id, attempt, error, delay
        )

    async def _settle(self, batch_id: str, status: str, attempts: int, error: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                batch_key(batch_id),
                mapping={
                    "callback_status": status,
                    "callback_attempts": attempts,
                    "callback_error": error,
                },
            )
            pipe.zrem(CALLBACKS_KEY, batch_id)
            await pipe.execute()
