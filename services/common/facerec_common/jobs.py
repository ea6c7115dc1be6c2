"""Job records in Redis, as the workers write them.

A job is a Redis hash: kind, tenant, status, timestamps, and at the end a JSON result or a
problem. Whoever finishes a job also deletes its images and publishes its id, so waiting
requests wake at once and nothing keeps the uploaded image after the job has ended.
"""

import json
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import redis

from facerec_common.errors import FaceRecError
from facerec_common.identities import text
from facerec_common.names import JOBS_DONE_CHANNEL, image_key, job_key
from facerec_common.results import JobResult


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def problem_of(error: FaceRecError, status: int | None = None) -> dict[str, Any]:
    """The problem object stored with a failed job; the gateway adds the HTTP status."""
    problem: dict[str, Any] = {"code": error.code, "title": error.title, "detail": error.detail}
    if status is not None:
        problem["status"] = status
    return problem


class JobWriter:
    """The workers' side of the job records."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    def load_image(self, job_id: str, index: int) -> bytes | None:
        data = self._redis.get(image_key(job_id, index))
        return data.encode() if isinstance(data, str) else data

    def ended(self, job_id: str) -> bool:
        """Whether the job is done or failed already (a re-drive sets it queued again)."""
        status = self._redis.hget(job_key(job_id), "status")
        return status is not None and text(status) in (JobStatus.DONE, JobStatus.FAILED)

    def outcome(self, job_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """An ended job's stored result and problem (JSON), either of them absent."""
        result, error = self._redis.hmget(job_key(job_id), ["result", "error"])
        return (
            json.loads(result) if result is not None else None,
            json.loads(error) if error is not None else None,
        )

    def mark_running(self, job_id: str) -> None:
        self._redis.hset(
            job_key(job_id), mapping={"status": JobStatus.RUNNING, "updated_at": _now()}
        )

    def finish(self, job_id: str, result: JobResult | dict[str, Any], image_count: int) -> None:
        """End the job as done with its result (a job kind's model; the indexer's
        synchronous calls answer plain dicts)."""
        body = result if isinstance(result, dict) else result.model_dump(mode="json")
        self._end(job_id, {"status": JobStatus.DONE, "result": json.dumps(body)}, image_count)

    def fail(
        self, job_id: str, problem: dict[str, Any], image_count: int, keep_images: bool = False
    ) -> None:
        """End the job as failed; ``keep_images`` for a job kept as a dead letter, whose
        re-drive needs them (the dead letter sets how long they stay)."""
        fields = {"status": JobStatus.FAILED, "error": json.dumps(problem)}
        self._end(job_id, fields, 0 if keep_images else image_count)

    def _end(self, job_id: str, fields: Mapping[Any, Any], image_count: int) -> None:
        key = job_key(job_id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={**fields, "updated_at": _now()})
            pipe.expire(key, self._ttl_s)
            if image_count:
                pipe.delete(*(image_key(job_id, i) for i in range(image_count)))
            pipe.publish(JOBS_DONE_CHANNEL, job_id)
            pipe.execute()


def _now() -> str:
    return f"{time.time():.3f}"
