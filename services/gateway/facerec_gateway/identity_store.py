"""Galleries and identity records in Redis (the gateway writes, the indexer reads)."""

import time
from typing import Any

import redis.asyncio as aioredis
from facerec_common.errors import CollectionNotFound, IdentityNotFound
from facerec_common.identities import IdentityRecord, IdentityState, text
from facerec_common.migrations import PACK
from facerec_common.names import (
    PREFIX,
    collection_settings_key,
    collections_key,
    identities_key,
    identity_key,
    migration_key,
)
from facerec_common.quality import QualityFilter

from facerec_gateway.ids import sortable_id
from facerec_gateway.problems import Conflict


def identity_names_key(tenant: str, collection: str) -> str:
    """Hash of a gallery's identity names (case-folded) -> the id that holds the name, so
    that a second identity of the same name is refused without reading every record."""
    return f"{PREFIX}:t:{tenant}:c:{collection}:identity-names"


def name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


# KEYS: names hash; ARGV: folded name, identity id, allow duplicates ("1" or "0").
# Returns "" when the name is now (or already) held by this id or duplicates are allowed,
# else the id that holds it.
_CLAIM_NAME = """
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if not holder or holder == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return ''
end
if ARGV[3] == '1' then return '' end
return holder
"""

# One of a gallery's settings, set in one step with the check that the gallery still
# exists: a change racing the gallery's erasure must not bring it back.
# KEYS: the tenant's galleries, the gallery's settings; ARGV: gallery, field, value ('' clears).
_SET_GALLERY_SETTING = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
return 1
"""

# Writes to an identity's record only while it exists: a rename or a deletion racing the
# identity's erasure must not leave a half record behind. KEYS: the record; ARGV: field,
# value pairs.
_HSET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


def gallery_not_found(collection: str) -> CollectionNotFound:
    return CollectionNotFound(
        f"gallery {collection!r} does not exist; check its name "
        "(GET /v1/collections lists them), or create it with "
        f"PUT /v1/collections/{collection} or by adding an identity to it"
    )


class IdentityStore:
    def __init__(self, client: "aioredis.Redis") -> None:
        self._redis = client
        self._claim_name = client.register_script(_CLAIM_NAME)
        self._set_gallery_setting = client.register_script(_SET_GALLERY_SETTING)
        self._hset_if_exists = client.register_script(_HSET_IF_EXISTS)

    async def add_collection(self, tenant: str, collection: str) -> bool:
        """Make the gallery; True if it is new."""
        return bool(await self._redis.sadd(collections_key(tenant), collection))

    async def has_collection(self, tenant: str, collection: str) -> bool:
        return bool(await self._redis.sismember(collections_key(tenant), collection))

    async def require_collection(self, tenant: str, collection: str) -> None:
        """Only enrolment (creating an identity), a batch or an explicit create makes a
        gallery; everything else answers 404 for one that does not exist."""
        if not await self.has_collection(tenant, collection):
            raise gallery_not_found(collection)

    async def claim_name(
        self, tenant: str, collection: str, name: str, identity_id: str, allow_duplicate: bool
    ) -> None:
        """Record ``name`` as held by ``identity_id``; 409 if another identity holds it."""
        holder = await self._claim_name(
            keys=[identity_names_key(tenant, collection)],
            args=[name_key(name), identity_id, "1" if allow_duplicate else "0"],
        )
        if holder:
            raise Conflict(
                f"gallery {collection!r} has an identity named {name!r} already "
                f"({text(holder)}); add faces to it, choose another name, or pass "
                "allow_duplicate_name=true to make a second one"
            )

    async def release_name(self, tenant: str, collection: str, name: str, identity_id: str) -> None:
        key, folded = identity_names_key(tenant, collection), name_key(name)
        if text(await self._redis.hget(key, folded) or b"") == identity_id:
            await self._redis.hdel(key, folded)

    async def collections(self, tenant: str) -> list[dict[str, Any]]:
        names = sorted(text(n) for n in await self._redis.smembers(collections_key(tenant)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(identities_key(tenant, name))
            counts = await pipe.execute()
        return [{"name": n, "identities": c} for n, c in zip(names, counts, strict=True)]

    async def collection(self, tenant: str, collection: str) -> dict[str, Any]:
        """The gallery's identity count and settings: ``threshold`` (None: the model's),
        ``quality_filter`` (None: the detector's setting), ``keep_crops``."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(identities_key(tenant, collection))
            pipe.hmget(
                collection_settings_key(tenant, collection),
                ["threshold", "quality_filter", "keep_crops", PACK],
            )
            count, (threshold, level, keep, pack) = await pipe.execute()
        return {
            "name": collection,
            "identities": count,
            "threshold": float(threshold) if threshold else None,
            "quality_filter": QualityFilter(text(level)) if level else None,
            # Kept unless the field says otherwise ("0").
            "keep_crops": keep is None,
            # Set by a model migration; None: the deployment's pack.
            "model_pack": text(pack) if pack else None,
        }

    async def set_quality_filter(
        self, tenant: str, collection: str, level: QualityFilter | None
    ) -> None:
        """Set (or with None clear) the gallery's enrolment quality bar."""
        await self._set_setting(tenant, collection, "quality_filter", level and level.value)

    async def set_keep_crops(self, tenant: str, collection: str, keep: bool) -> None:
        """Keep crops of new enrolments (the default: no field) or not ("0")."""
        await self._set_setting(tenant, collection, "keep_crops", None if keep else "0")

    async def set_threshold(self, tenant: str, collection: str, threshold: float | None) -> None:
        """Set (or with None clear) the gallery's match threshold."""
        value = None if threshold is None else repr(threshold)
        await self._set_setting(tenant, collection, "threshold", value)

    async def _set_setting(
        self, tenant: str, collection: str, field: str, value: str | None
    ) -> None:
        changed = await self._set_gallery_setting(
            keys=[collections_key(tenant), collection_settings_key(tenant, collection)],
            args=[collection, field, value or ""],
        )
        if not changed:
            raise gallery_not_found(collection)

    async def create(
        self,
        tenant: str,
        collection: str,
        name: str,
        metadata: dict[str, Any],
        allow_duplicate_name: bool = False,
    ) -> IdentityRecord:
        record = IdentityRecord(
            id=sortable_id(), name=name, metadata=metadata, created_at=time.time()
        )
        await self.claim_name(tenant, collection, name, record.id, allow_duplicate_name)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(collections_key(tenant), collection)
            pipe.hset(identity_key(tenant, collection, record.id), mapping=record.to_hash())
            pipe.zadd(identities_key(tenant, collection), {record.id: 0})
            await pipe.execute()
        return record

    async def update(
        self,
        tenant: str,
        collection: str,
        record: IdentityRecord,
        name: str | None,
        metadata: dict[str, Any] | None,
        allow_duplicate_name: bool = False,
    ) -> IdentityRecord:
        """Rename an identity or replace its metadata; matches show the new name at once,
        since results read names from these records."""
        changed = record.model_copy()
        if name is not None and name != record.name:
            await self.claim_name(tenant, collection, name, record.id, allow_duplicate_name)
            await self.release_name(tenant, collection, record.name, record.id)
            changed.name = name
        if metadata is not None:
            changed.metadata = metadata
        fields = changed.to_hash()
        written = await self._hset_if_exists(
            keys=[identity_key(tenant, collection, record.id)],
            args=["name", fields["name"], "metadata", fields["metadata"]],
        )
        if not written:
            raise IdentityNotFound(f"identity {record.id} was deleted during this change")
        return changed

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
        await self._hset_if_exists(
            keys=[identity_key(tenant, collection, identity_id)],
            args=["state", IdentityState.DELETING.value],
        )

    async def remove(self, tenant: str, collection: str, identity_id: str) -> None:
        record = await self.get(tenant, collection, identity_id)
        if record is not None:
            await self.release_name(tenant, collection, record.name, identity_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(identity_key(tenant, collection, identity_id))
            pipe.zrem(identities_key(tenant, collection), identity_id)
            await pipe.execute()

    async def mark_collection_deleting(self, tenant: str, collection: str) -> list[str]:
        ids = await self.all_ids(tenant, collection)
        async with self._redis.pipeline(transaction=False) as pipe:
            for identity in ids:
                await self._hset_if_exists(
                    keys=[identity_key(tenant, collection, identity)],
                    args=["state", IdentityState.DELETING.value],
                    client=pipe,
                )
            await pipe.execute()
        return ids

    async def remove_collection(self, tenant: str, collection: str, ids: list[str]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for identity in ids:
                pipe.delete(identity_key(tenant, collection, identity))
            pipe.delete(identities_key(tenant, collection))
            pipe.delete(identity_names_key(tenant, collection))
            pipe.delete(collection_settings_key(tenant, collection))
            pipe.delete(migration_key(tenant, collection))
            pipe.srem(collections_key(tenant), collection)
            await pipe.execute()
