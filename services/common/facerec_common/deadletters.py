"""Dead letters: the messages whose job failed after every try of a stage.

Each tenant has one hash, job id -> msgpack entry (what failed, why, and the task's
message), so a poison message is kept out of the queues yet can be looked at and sent
again. The job's images are kept as long as the entry, since a re-driven detect stage
needs them; erasing the tenant erases both.
"""

import time
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]
import redis

from facerec_common.names import dead_letters_key, image_key, job_key

# KEYS: dead letters of the tenant; ARGV: job id. Returns the entry and removes it, so two
# admins re-driving at once send the message once.
_TAKE_SCRIPT = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry then redis.call('HDEL', KEYS[1], ARGV[1]) end
return entry
"""


@dataclass(frozen=True)
class DeadLetter:
    job_id: str
    tenant: str
    stage: str
    task: str
    code: str
    detail: str
    attempts: int
    at: float
    image_count: int
    payload: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """What a listing shows: everything but the message itself."""
        return {
            "job_id": self.job_id,
            "stage": self.stage,
            "code": self.code,
            "detail": self.detail,
            "attempts": self.attempts,
            "at": self.at,
            "image_count": self.image_count,
        }


def _pack(letter: DeadLetter) -> bytes:
    packed: bytes = msgpack.packb(letter.__dict__, use_bin_type=True)
    return packed


def _unpack(data: bytes) -> DeadLetter:
    return DeadLetter(**msgpack.unpackb(data, raw=False))


class DeadLetterStore:
    """Synchronous side (workers): put a job's message aside."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    def add(self, letter: DeadLetter) -> None:
        key = dead_letters_key(letter.tenant)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, letter.job_id, _pack(letter))
            pipe.expire(key, self._ttl_s)
            for index in range(letter.image_count):
                pipe.expire(image_key(letter.job_id, index), self._ttl_s)
            pipe.execute()


def new_letter(
    payload: dict[str, Any],
    tenant: str,
    job_id: str,
    stage: str,
    task: str,
    problem: dict[str, Any],
    attempts: int,
) -> DeadLetter:
    images = payload.get("images")
    return DeadLetter(
        job_id=job_id,
        tenant=tenant,
        stage=stage,
        task=task,
        code=str(problem.get("code", "")),
        detail=str(problem.get("detail", "")),
        attempts=attempts,
        at=round(time.time(), 3),
        image_count=len(images) if isinstance(images, list) else 0,
        payload=payload,
    )


class AsyncDeadLetters:
    """The gateway's side: list, take for a re-drive, erase with the tenant."""

    def __init__(self, client: Any) -> None:  # redis.asyncio.Redis
        self._redis = client

    async def list(self, tenant: str) -> list[DeadLetter]:
        entries = await self._redis.hgetall(dead_letters_key(tenant))
        letters = [_unpack(value) for value in entries.values()]
        return sorted(letters, key=lambda letter: letter.at, reverse=True)

    async def take(self, tenant: str, job_id: str) -> DeadLetter | None:
        data = await self._redis.eval(_TAKE_SCRIPT, 1, dead_letters_key(tenant), job_id)
        return None if data is None else _unpack(data)

    async def requeue_job(self, letter: DeadLetter, job_ttl_s: int) -> None:
        """Make the job queued again, as it was before its failed stage."""
        key = job_key(letter.job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": "queued", "updated_at": f"{time.time():.3f}"})
            pipe.hdel(key, "error")
            pipe.expire(key, job_ttl_s)
            await pipe.execute()

    async def erase(self, tenant: str) -> int:
        letters = await self.list(tenant)
        keys = [image_key(dead.job_id, i) for dead in letters for i in range(dead.image_count)]
        await self._redis.delete(dead_letters_key(tenant), *keys)
        return len(letters)
