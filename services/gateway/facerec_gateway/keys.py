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
from facerec_common.names import api_key_key, tenant_keys_key

KEY_PATTERN = re.compile(r"^frk_([a-z0-9]{10})_([A-Za-z0-9_-]{43})$")
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


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

    def body(self) -> dict[str, Any]:
        return {
            "prefix": f"frk_{self.prefix}",
            "tenant": self.tenant,
            "scopes": sorted(self.scopes),
            "name": self.name,
            "created_at": self.created_at,
            "rate_limit_per_minute": self.rate_limit_per_minute,
        }


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
        )
        fields: dict[Any, Any] = {
            "tenant": tenant,
            "scopes": ",".join(sorted(scopes)),
            "name": name,
            "created_at": repr(record.created_at),
            "digest": digest(key),
            "rate_limit_per_minute": str(rate_limit_per_minute or ""),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(api_key_key(record.prefix))
            pipe.hset(api_key_key(record.prefix), mapping=fields)
            pipe.sadd(tenant_keys_key(tenant), record.prefix)
            await pipe.execute()
        return record, key

    async def authenticate(self, presented: str) -> ApiKey | None:
        match = KEY_PATTERN.match(presented)
        if match is None:
            return None
        fields = decoded(await self._redis.hgetall(api_key_key(match.group(1))))
        if not fields or not hmac.compare_digest(fields["digest"], digest(presented)):
            return None
        return _record(match.group(1), fields)

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
        owner = await self._redis.hget(api_key_key(key_prefix), "tenant")
        if owner is None or text(owner) != tenant:
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(api_key_key(key_prefix))
            pipe.srem(tenant_keys_key(tenant), key_prefix)
            await pipe.execute()
        return True

    async def revoke_all(self, tenant: str) -> int:
        prefixes = [text(p) for p in await self._redis.smembers(tenant_keys_key(tenant))]
        async with self._redis.pipeline(transaction=True) as pipe:
            for key_prefix in prefixes:
                pipe.delete(api_key_key(key_prefix))
            pipe.delete(tenant_keys_key(tenant))
            await pipe.execute()
        return len(prefixes)


def _record(prefix: str, fields: dict[str, str]) -> ApiKey:
    limit = fields.get("rate_limit_per_minute", "")
    return ApiKey(
        prefix=prefix,
        tenant=fields["tenant"],
        scopes=frozenset(KeyScope(s) for s in fields["scopes"].split(",") if s),
        name=fields.get("name", ""),
        created_at=float(fields.get("created_at", 0)),
        rate_limit_per_minute=int(limit) if limit else None,
    )
