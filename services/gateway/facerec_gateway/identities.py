"""Galleries and identity records in Redis (the gateway writes, the indexer reads)."""

import time
from typing import Any

import redis.asyncio as aioredis
from facerec_common.identities import IdentityRecord, IdentityState, text
from facerec_common.names import (
    collection_settings_key,
    collections_key,
    identities_key,
    identity_key,
)

from facerec_gateway.ids import sortable_id


class IdentityStore:
    def __init__(self, client: "aioredis.Redis") -> None:
        self._redis = client

    async def add_collection(self, tenant: str, collection: str) -> None:
        await self._redis.sadd(collections_key(tenant), collection)

    async def has_collection(self, tenant: str, collection: str) -> bool:
        return bool(await self._redis.sismember(collections_key(tenant), collection))

    async def collections(self, tenant: str) -> list[dict[str, Any]]:
        names = sorted(text(n) for n in await self._redis.smembers(collections_key(tenant)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(identities_key(tenant, name))
            counts = await pipe.execute()
        return [{"name": n, "identities": c} for n, c in zip(names, counts, strict=True)]

    async def collection(self, tenant: str, collection: str) -> dict[str, Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(identities_key(tenant, collection))
            pipe.hget(collection_settings_key(tenant, collection), "threshold")
            count, threshold = await pipe.execute()
        return {
            "name": collection,
            "identities": count,
            "threshold": float(threshold) if threshold else None,
        }

    async def set_threshold(self, tenant: str, collection: str, threshold: float | None) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(collections_key(tenant), collection)
            if threshold is None:
                pipe.hdel(collection_settings_key(tenant, collection), "threshold")
            else:
                pipe.hset(collection_settings_key(tenant, collection), "threshold", repr(threshold))
            await pipe.execute()

    async def create(
        self, tenant: str, collection: str, name: str, metadata: dict[str, Any]
    ) -> IdentityRecord:
        record = IdentityRecord(
            id=sortable_id(), name=name, metadata=metadata, created_at=time.time()
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(collections_key(tenant), collection)
            pipe.hset(identity_key(tenant, collection, record.id), mapping=record.to_hash())
            pipe.zadd(identities_key(tenant, collection), {record.id: 0})
            await pipe.execute()
        return record

    async def get(self, tenant: str, collection: str, identity_id: str) -> IdentityRecord | None:
        fields = await self._redis.hgetall(identity_key(tenant, collection, identity_id))
        return IdentityRecord.from_hash(fields) if fields else None

    async def page(
        self, tenant: str, collection: str, limit: int, cursor: str | None
    ) -> tuple[list[IdentityRecord], str | None]:
        start = f"({cursor}" if cursor else "-"
        raw_ids = await self._redis.zrange(
            identities_key(tenant, collection), start, "+", bylex=True, offset=0, num=limit + 1
        )
        more = len(raw_ids) > limit
        ids = [text(raw) for raw in raw_ids[:limit]]
        async with self._redis.pipeline(transaction=False) as pipe:
            for identity in ids:
                pipe.hgetall(identity_key(tenant, collection, identity))
            found = await pipe.execute()
        records = [IdentityRecord.from_hash(f) for f in found if f]
        return records, (ids[-1] if more and ids else None)

    async def all_ids(self, tenant: str, collection: str) -> list[str]:
        members = await self._redis.zrange(identities_key(tenant, collection), 0, -1)
        return [text(member) for member in members]

    async def mark_deleting(self, tenant: str, collection: str, identity_id: str) -> None:
        await self._redis.hset(
            identity_key(tenant, collection, identity_id), "state", IdentityState.DELETING.value
        )

    async def remove(self, tenant: str, collection: str, identity_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(identity_key(tenant, collection, identity_id))
            pipe.zrem(identities_key(tenant, collection), identity_id)
            await pipe.execute()

    async def mark_collection_deleting(self, tenant: str, collection: str) -> list[str]:
        ids = await self.all_ids(tenant, collection)
        async with self._redis.pipeline(transaction=False) as pipe:
            for identity in ids:
                pipe.hset(
                    identity_key(tenant, collection, identity),
                    "state",
                    IdentityState.DELETING.value,
                )
            await pipe.execute()
        return ids

    async def remove_collection(self, tenant: str, collection: str, ids: list[str]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for identity in ids:
                pipe.delete(identity_key(tenant, collection, identity))
            pipe.delete(identities_key(tenant, collection))
            pipe.delete(collection_settings_key(tenant, collection))
            pipe.srem(collections_key(tenant), collection)
            await pipe.execute()
