"""Abuse limits: a request rate per API key, and backpressure on the stage queues."""

import time

import redis.asyncio as aioredis
from facerec_common.names import Queue, queue_lists, rate_key

WINDOW_S = 60


class RateLimiter:
    """Fixed one-minute windows counted in Redis, so every gateway replica shares them."""

    def __init__(self, client: "aioredis.Redis") -> None:
        self._redis = client

    async def retry_after(self, key_prefix: str, limit_per_minute: int) -> int | None:
        """Count one request; seconds until the next window if this one is over the limit."""
        now = time.time()
        window = int(now // WINDOW_S)
        key = rate_key(key_prefix, window)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_S * 2)
            count, _ = await pipe.execute()
        if int(count) <= limit_per_minute:
            return None
        return max(1, int((window + 1) * WINDOW_S - now) + 1)


async def queue_lengths(client: "aioredis.Redis") -> dict[str, int]:
    """Waiting tasks in every queue list, interactive and batch (Celery's Redis transport
    keeps each queue and priority level as a list)."""
    names = queue_lists()
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(name)
        lengths = await pipe.execute()
    return {name: int(n) for name, n in zip(names, lengths, strict=True)}


async def longest_queue(client: "aioredis.Redis") -> tuple[str, int]:
    """The interactive stage queue with the most waiting tasks. Batches have their own
    limit (they wait in the batch lists and never make interactive requests wait)."""
    lengths = await queue_lengths(client)
    return max(((str(q), lengths[str(q)]) for q in Queue), key=lambda pair: pair[1])
