"""Jobs as the gateway sees them: created with their images, sent by task name, read back,
and waited for through one pub/sub subscription instead of polling Redis."""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
import redis.asyncio as aioredis
from celery import Celery
from facerec_common.identities import decoded, text
from facerec_common.jobs import JobStatus
from facerec_common.messages import JobKind
from facerec_common.names import JOBS_DONE_CHANNEL, image_key, job_key
from facerec_common.results import JobResult
from pydantic import BaseModel
from redis.exceptions import RedisError

from facerec_gateway.problems import Problem

log = logging.getLogger(__name__)


R = TypeVar("R")


class JobBody(BaseModel, Generic[R]):
    """How a job is answered: its state and, once ended, its result or its problem."""

    job_id: str
    kind: JobKind
    status: JobStatus
    status_url: str
    created_at: float
    updated_at: float
    # Present once the job is done; the model is the job kind's result.
    result: R | None = None
    # Present once the job has failed: the problem the request would have had.
    error: Problem | None = None


class AnyJobBody(JobBody[JobResult]):
    """A job of any kind: the result is the one of its kind."""


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    tenant: str
    status: JobStatus
    created_at: float
    updated_at: float
    result: dict[str, Any] | None
    error: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.FAILED)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "job_id": self.id,
            "kind": self.kind,
            "status": self.status.value,
            "status_url": f"/v1/jobs/{self.id}",
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.result is not None:
            body["result"] = self.result
        if self.error is not None:
            body["error"] = self.error
        return body


class JobStore:
    def __init__(
        self, client: "aioredis.Redis", celery: Celery, job_ttl_s: int, image_ttl_s: int
    ) -> None:
        self._redis = client
        self._celery = celery
        self._job_ttl_s = job_ttl_s
        self._image_ttl_s = image_ttl_s

    async def submit(
        self,
        job_id: str,
        kind: str,
        tenant: str,
        task: str,
        payload: dict[str, Any],
        images: Sequence[bytes] = (),
        priority: int = 0,
        image_ttl_s: int | None = None,
    ) -> None:
        """Store the job record and its images, then send the first task by name."""
        now = f"{time.time():.3f}"
        key = job_key(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "kind": kind,
                    "tenant": tenant,
                    "status": JobStatus.QUEUED.value,
                    "created_at": now,
                    "updated_at": now,
                    "image_count": str(len(images)),
                },
            )
            pipe.expire(key, self._job_ttl_s)
            for index, data in enumerate(images):
                pipe.set(image_key(job_id, index), data, ex=image_ttl_s or self._image_ttl_s)
            await pipe.execute()
        # kombu's Redis transport is synchronous; keep it off the event loop.
        await anyio.to_thread.run_sync(
            lambda: self._celery.send_task(task, args=[payload], priority=priority)
        )

    async def get(self, job_id: str) -> Job | None:
        fields = await self._redis.hgetall(job_key(job_id))
        if not fields:
            return None
        values = decoded(fields)
        return Job(
            id=job_id,
            kind=values.get("kind", ""),
            tenant=values.get("tenant", ""),
            status=JobStatus(values.get("status", JobStatus.QUEUED)),
            created_at=float(values.get("created_at", 0)),
            updated_at=float(values.get("updated_at", 0)),
            result=json.loads(values["result"]) if "result" in values else None,
            error=json.loads(values["error"]) if "error" in values else None,
        )


class JobWaiter:
    """Wakes requests waiting for a job when its worker publishes the job's id."""

    def __init__(self, client: "aioredis.Redis") -> None:
        self._redis = client
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    async def listen(self) -> None:
        """Runs for the gateway's lifetime; reconnects if Redis goes away."""
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(JOBS_DONE_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._wake(text(message["data"]))
            except (RedisError, OSError) as exc:
                log.warning("job notifications interrupted (%s); resubscribing", exc)
                await asyncio.sleep(1.0)

    def _wake(self, job_id: str) -> None:
        for future in self._waiting.pop(job_id, set()):
            if not future.done():
                future.set_result(None)

    async def wait(self, store: JobStore, job_id: str, timeout_s: float) -> Job | None:
        """The job once finished, or as it stands when ``timeout_s`` runs out."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, set()).add(future)
        try:
            # Subscribed before reading: a job finishing in between still wakes us.
            job = await store.get(job_id)
            if job is None or job.finished or timeout_s <= 0:
                return job
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout_s)
            return await store.get(job_id)
        finally:
            waiters = self._waiting.get(job_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    self._waiting.pop(job_id, None)
