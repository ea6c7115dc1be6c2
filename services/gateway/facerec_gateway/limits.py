"""Abuse limits: a request rate per API key, and backpressure on the stage queues (the one
place that decides whether new work is taken)."""

import time

import redis.asyncio as aioredis
from facerec_common.names import Queue, batch_list, queue_lists, rate_key

from facerec_gateway.problems import Overloaded
from facerec_gateway.settings import GatewaySettings

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


async def ensure_room(
    client: "aioredis.Redis", settings: GatewaySettings, batch: bool = False
) -> None:
    """Refuse new work (429 with Retry-After) while too many tasks wait. An interactive
    request looks at the longest interactive queue; batch images at all the batch lists
    together, under a limit of their own (they never make interactive requests wait)."""
    lengths = await queue_lengths(client)
    retry = {"Retry-After": str(settings.retry_after_s)}
    if batch:
        waiting = sum(lengths[batch_list(queue)] for queue in Queue)
        limit = settings.max_batch_queue_length
        if waiting > limit:
            raise Overloaded(
                f"{waiting} batch tasks are waiting (limit {limit}); send this part again later",
                retry,
            )
        return
    queue, waiting = max(((str(q), lengths[str(q)]) for q in Queue), key=lambda pair: pair[1])
    limit = settings.max_queue_length
    if waiting > limit:
        raise Overloaded(
            f"{waiting} tasks wait in the {queue!r} queue (limit {limit}); retry later", retry
        )
