"""API keys: one tenant each, with scopes, stored in Redis only as a sha256 digest.

A key reads ``frk_<prefix>_<secret>``. The prefix is public (it names the key in lists and
revocations); the secret is 32 random URL-safe bytes, so a plain sha256 is a safe digest.
"""

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from facerec_common.identities import decoded, text
from facerec_common.names import api_key_key, bootstrap_key_key, tenant_keys_key

KEY_PATTERN = re.compile(r"^frk_([a-z0-9]{10})_([A-Za-z0-9_-]{43})$")
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# A key's last use is written at most this often (seconds), not on every request.
LAST_USED_RESOLUTION_S = 60.0
# Sets a field of a key only while the key exists: a use racing a revocation must not
# bring back a fragment of the revoked key.
_SET_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
    return 1
end
return 0
"""


class KeyScope(StrEnum):
    READ = "read"  # recognise, detect, verify, read jobs, list
    WRITE = "write"  # enrol, create and delete identities and galleries
    ADMIN = "admin"  # manage keys, erase the tenant


@dataclass(frozen=True)
class ApiKey:
    prefix: str
    tenant: str
    scopes: frozenset[KeyScope]
    name: str
    created_at: float
    rate_limit_per_minute: int | None = None
    # Unix time after which the key is refused; None: it does not expire.
    expires_at: float | None = None
    # Unix time of its last use, to the minute (LAST_USED_RESOLUTION_S); None: never used.
    last_used_at: float | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def body(self) -> dict[str, Any]:
        return {
            "prefix": f"frk_{self.prefix}",
            "tenant": self.tenant,
            "scopes": sorted(self.scopes),
            "name": self.name,
            "created_at": self.created_at,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
        }


class BootstrapOutcome(StrEnum):
    """What start-up did with the bootstrap admin key."""

    CREATED = "created"
    PRESENT = "present"  # created by an earlier start and still valid
    REVOKED = "revoked"  # created once, revoked since: never created again
    TENANT_HAS_ADMIN = "tenant-has-admin"  # the tenant has an admin key already
    PREFIX_TAKEN = "prefix-taken"  # another key has its prefix


def new_key() -> str:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(10))
    return f"frk_{prefix}_{secrets.token_urlsafe(32)}"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, client: "aioredis.Redis") -> None:
        self._redis = client

    async def create(
        self,
        tenant: str,
        scopes: set[KeyScope],
        name: str,
        rate_limit_per_minute: int | None = None,
        key: str | None = None,
        expires_at: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key (or ``key`` itself, for the bootstrap key); the plain key is returned
        once and never stored."""
        key = key or new_key()
        match = KEY_PATTERN.match(key)
        if match is None:
            raise ValueError(
                "an API key must look like frk_<10 lowercase letters or digits>_<43 characters>"
            )
        record = ApiKey(
            prefix=match.group(1),
            tenant=tenant,
            scopes=frozenset(scopes),
            name=name,
            created_at=time.time(),
            rate_limit_per_minute=rate_limit_per_minute,
            expires_at=expires_at,
        )
        fields: dict[Any, Any] = {
            "tenant": tenant,
            "scopes": ",".join(sorted(scopes)),
            "name": name,
            "created_at": repr(record.created_at),
            "digest": digest(key),
            "rate_limit_per_minute": str(rate_limit_per_minute or ""),
            "expires_at": repr(expires_at) if expires_at is not None else "",
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(api_key_key(record.prefix))
            pipe.hset(api_key_key(record.prefix), mapping=fields)
            pipe.sadd(tenant_keys_key(tenant), record.prefix)
            await pipe.execute()
        return record, key

    async def authenticate(self, presented: str) -> ApiKey | None:
        """The key's record, expired or not (the caller says which); notes its use, at most
        once a minute, unless it has expired."""
        match = KEY_PATTERN.match(presented)
        if match is None:
            return None
        fields = decoded(await self._redis.hgetall(api_key_key(match.group(1))))
        if "digest" not in fields or not hmac.compare_digest(fields["digest"], digest(presented)):
            return None
        record = _record(match.group(1), fields)
        now = time.time()
        if not record.expired(now) and (
            record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION_S
        ):
            await self._redis.eval(
                _SET_IF_PRESENT, 1, api_key_key(record.prefix), "last_used_at", repr(now)
            )
        return record

    async def bootstrap(self, tenant: str, key: str) -> tuple[BootstrapOutcome, ApiKey | None]:
        """Create the bootstrap admin key once, for a tenant that has no admin key. Its fate
        is kept under its digest, so a restart never brings back a revoked one."""
        match = KEY_PATTERN.match(key)
        if match is None:
            raise ValueError(
                "an API key must look like frk_<10 lowercase letters or digits>_<43 characters>"
            )
        prefix, key_digest = match.group(1), digest(key)
        marker = bootstrap_key_key(key_digest)
        fate = decoded(await self._redis.hgetall(marker))
        fields = decoded(await self._redis.hgetall(api_key_key(prefix)))
        if fields.get("digest") == key_digest:
            if not fate:  # made before its fate was kept: adopt it
                await self._mark_bootstrap(marker, tenant, prefix, "created")
            return BootstrapOutcome.PRESENT, _record(prefix, fields)
        if fate:
            if fate.get("state") != "revoked":  # revoked by a path that did not say so
                await self._redis.hset(
                    marker, mapping={"state": "revoked", "revoked_at": repr(time.time())}
                )
            return BootstrapOutcome.REVOKED, None
        if fields:
            return BootstrapOutcome.PREFIX_TAKEN, None
        if any(KeyScope.ADMIN in k.scopes for k in await self.list(tenant)):
            return BootstrapOutcome.TENANT_HAS_ADMIN, None
        record, _ = await self.create(tenant, set(KeyScope), "bootstrap admin key", key=key)
        await self._mark_bootstrap(marker, tenant, prefix, "created")
        return BootstrapOutcome.CREATED, record

    async def bootstrap_fate(self, key: str) -> dict[str, str]:
        """What is recorded of a bootstrap key: tenant, prefix, state, created_at,
        revoked_at."""
        return decoded(await self._redis.hgetall(bootstrap_key_key(digest(key))))

    async def _mark_bootstrap(self, marker: str, tenant: str, prefix: str, state: str) -> None:
        await self._redis.hset(
            marker,
            mapping={
                "tenant": tenant,
                "prefix": prefix,
                "state": state,
                "created_at": repr(time.time()),
            },
        )

    async def _mark_revoked(self, key_digests: list[str]) -> None:
        """A revoked bootstrap key stays revoked: its marker says so."""
        now = repr(time.time())
        for key_digest in key_digests:
            marker = bootstrap_key_key(key_digest)
            if await self._redis.exists(marker):
                await self._redis.hset(marker, mapping={"state": "revoked", "revoked_at": now})

    async def list(self, tenant: str, prefix: str | None = None) -> list[ApiKey]:
        prefixes = sorted(text(p) for p in await self._redis.smembers(tenant_keys_key(tenant)))
        wanted = (prefix or "").removeprefix("frk_")
        records = []
        for key_prefix in prefixes:
            if key_prefix.startswith(wanted):
                fields = decoded(await self._redis.hgetall(api_key_key(key_prefix)))
                if fields:
                    records.append(_record(key_prefix, fields))
        return records

    async def revoke(self, tenant: str, prefix: str) -> bool:
        key_prefix = prefix.removeprefix("frk_")
        owner, key_digest = await self._redis.hmget(api_key_key(key_prefix), ["tenant", "digest"])
        if owner is None or text(owner) != tenant:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(api_key_key(key_prefix))
            pipe.srem(tenant_keys_key(tenant), key_prefix)
            await pipe.execute()
        if key_digest is not None:
            await self._mark_revoked([text(key_digest)])
        return True

    async def revoke_all(self, tenant: str) -> int:
        prefixes = [text(p) for p in await self._redis.smembers(tenant_keys_key(tenant))]
        key_digests = [
            text(d)
            for d in [await self._redis.hget(api_key_key(p), "digest") for p in prefixes]
            if d is not None
        ]
        async with self._redis.pipeline(transaction=True) as pipe:
            for key_prefix in prefixes:
                pipe.delete(api_key_key(key_prefix))
            pipe.delete(tenant_keys_key(tenant))
            await pipe.execute()
        await self._mark_revoked(key_digests)
        return len(prefixes)


def _record(prefix: str, fields: dict[str, str]) -> ApiKey:
    limit = fields.get("rate_limit_per_minute", "")
    expires = fields.get("expires_at", "")
    used = fields.get("last_used_at", "")
    return ApiKey(
        prefix=prefix,
        tenant=fields["tenant"],
        scopes=frozenset(KeyScope(s) for s in fields["scopes"].split(",") if s),
        name=fields.get("name", ""),
        created_at=float(fields.get("created_at", 0)),
        rate_limit_per_minute=int(limit) if limit else None,
        expires_at=float(expires) if expires else None,
        last_used_at=float(used) if used else None,
    )
