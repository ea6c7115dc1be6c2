"""Batches as the gateway keeps them: a Redis hash of state and counts per batch, the
per-image results the workers append, and the gallery's record of which images (by
sha256) were already submitted. All in Redis, so a batch outlives any gateway process."""

import json
import time
from typing import Any

import redis.asyncio as aioredis
from facerec_common.batches import ADMIT_SCRIPT, CANCEL_SCRIPT, CLOSE_SCRIPT, COUNTS, BatchStatus
from facerec_common.identities import decoded, text
from facerec_common.names import (
    CALLBACKS_KEY,
    batch_images_key,
    batch_key,
    batch_recorded_key,
    batch_results_key,
    batches_key,
)

from facerec_gateway.ids import sortable_id


class Admission:
    ADMITTED = 1
    DUPLICATE = 0
    NOT_OPEN = -1


class BatchStore:
    def __init__(self, client: "aioredis.Redis") -> None:
        self._redis = client
        self._admit = client.register_script(ADMIT_SCRIPT)
        self._close = client.register_script(CLOSE_SCRIPT)
        self._cancel = client.register_script(CANCEL_SCRIPT)
        self._forget = client.register_script(_FORGET_IMAGES)

    async def create(
        self, tenant: str, collection: str, name: str | None, callback_url: str | None
    ) -> dict[str, Any]:
        batch_id = sortable_id()
        now = time.time()
        fields: dict[Any, Any] = {
            "tenant": tenant,
            "collection": collection,
            "name": name or "",
            "status": BatchStatus.OPEN.value,
            "created_at": repr(now),
            "callback_url": callback_url or "",
            **{count: "0" for count in COUNTS},
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(batch_key(batch_id), mapping=fields)
            pipe.zadd(batches_key(tenant, collection), {batch_id: now})
            await pipe.execute()
        return batch_body(batch_id, {str(k): str(v) for k, v in fields.items()})

    async def get(self, tenant: str, collection: str, batch_id: str) -> dict[str, Any] | None:
        fields = decoded(await self._redis.hgetall(batch_key(batch_id)))
        if not fields or fields["tenant"] != tenant or fields["collection"] != collection:
            return None
        return batch_body(batch_id, fields)

    async def all(self, tenant: str, collection: str) -> list[dict[str, Any]]:
        ids = [text(i) for i in await self._redis.zrange(batches_key(tenant, collection), 0, -1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for batch_id in ids:
                pipe.hgetall(batch_key(batch_id))
            found = await pipe.execute()
        return [batch_body(i, decoded(f)) for i, f in zip(ids, found, strict=True) if f]

    async def admit(self, tenant: str, collection: str, batch_id: str, sha256: str) -> int:
        """Claim ``sha256`` for this batch: ADMITTED, DUPLICATE (already submitted to this
        gallery) or NOT_OPEN."""
        keys = [batch_key(batch_id), batch_images_key(tenant, collection)]
        return int(await self._admit(keys=keys, args=[sha256, batch_id]))

    async def withdraw(self, tenant: str, collection: str, batch_id: str, sha256: str) -> None:
        """Undo ``admit`` for an image whose job could not be sent."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(batch_images_key(tenant, collection), sha256)
            pipe.hincrby(batch_key(batch_id), "submitted", -1)
            await pipe.execute()

    async def close(self, batch_id: str) -> bool:
        """Close the batch; True if that finished it (every image was already done)."""
        done = await self._close(
            keys=[batch_key(batch_id), CALLBACKS_KEY], args=[batch_id, f"{time.time():.3f}"]
        )
        return bool(done == 1)

    async def cancel(self, batch_id: str) -> str:
        """Cancel an open or closed batch; the status it had before."""
        before = await self._cancel(keys=[batch_key(batch_id)], args=[f"{time.time():.3f}"])
        return text(before)

    async def delete(self, tenant: str, collection: str, batch_id: str) -> int:
        """Forget the batch: its record, results, and the hashes of the images sent in it
        (so the same files may be sent again). How many image hashes were forgotten."""
        forgotten = await self._forget(keys=[batch_images_key(tenant, collection)], args=[batch_id])
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(batch_key(batch_id), batch_results_key(batch_id))
            pipe.delete(batch_recorded_key(batch_id))
            pipe.zrem(batches_key(tenant, collection), batch_id)
            pipe.zrem(CALLBACKS_KEY, batch_id)
            await pipe.execute()
        return int(forgotten)

    async def known(self, tenant: str, collection: str, digests: list[str]) -> list[str]:
        if not digests:
            return []
        found = await self._redis.hmget(batch_images_key(tenant, collection), digests)
        return [d for d, batch in zip(digests, found, strict=True) if batch is not None]

    async def results(
        self, batch_id: str, limit: int, cursor: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of per-image results; the cursor is a position in the append-only list."""
        raw = await self._redis.lrange(batch_results_key(batch_id), cursor, cursor + limit)
        page = [json.loads(item) for item in raw[:limit]]
        return page, (cursor + limit if len(raw) > limit else None)

    async def erase_collection(self, tenant: str, collection: str) -> int:
        """Forget every batch of the gallery: records, results, image hashes."""
        ids = [text(i) for i in await self._redis.zrange(batches_key(tenant, collection), 0, -1)]
        async with self._redis.pipeline(transaction=True) as pipe:
            for batch_id in ids:
                pipe.delete(
                    batch_key(batch_id), batch_results_key(batch_id), batch_recorded_key(batch_id)
                )
                pipe.zrem(CALLBACKS_KEY, batch_id)
            pipe.delete(batches_key(tenant, collection), batch_images_key(tenant, collection))
            await pipe.execute()
        return len(ids)


# KEYS: images-of-collection (sha256 -> batch id); ARGV: batch id. Deletes the entries of
# that batch; returns how many. One pass over the gallery's hashes, in the server.
_FORGET_IMAGES = """
local cursor, forgotten = '0', 0
repeat
  local page = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', 1000)
  cursor = page[1]
  local fields = page[2]
  for i = 1, #fields, 2 do
    if fields[i + 1] == ARGV[1] then
      redis.call('HDEL', KEYS[1], fields[i])
      forgotten = forgotten + 1
    end
  end
until cursor == '0'
return forgotten
"""


def batch_body(batch_id: str, fields: dict[str, str]) -> dict[str, Any]:
    counts = {count: int(fields.get(count, 0) or 0) for count in COUNTS}
    finished = counts["done"] + counts["failed"]
    counts["queued"] = max(counts["submitted"] - finished, 0)
    status = fields.get("status", BatchStatus.OPEN.value)
    if status == BatchStatus.DONE:
        progress = 1.0
    else:
        progress = round(finished / counts["submitted"], 4) if counts["submitted"] else 0.0
    body: dict[str, Any] = {
        "id": batch_id,
        "collection": fields.get("collection"),
        "name": fields.get("name") or None,
        "status": status,
        "created_at": _time(fields.get("created_at")),
        "closed_at": _time(fields.get("closed_at")),
        "finished_at": _time(fields.get("finished_at")),
        "cancelled_at": _time(fields.get("cancelled_at")),
        "callback_url": fields.get("callback_url") or None,
        "counts": counts,
        "progress": progress,
    }
    if fields.get("callback_url"):
        body["callback"] = {
            "status": fields.get("callback_status", "waiting"),
            "attempts": int(fields.get("callback_attempts", 0) or 0),
            "last_error": fields.get("callback_error") or None,
        }
    return body


def _time(value: str | None) -> float | None:
    return float(value) if value else None
