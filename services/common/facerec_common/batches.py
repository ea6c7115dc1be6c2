"""Batch bookkeeping in Redis, shared by the gateway (admit, close) and the workers (record
each image's outcome).

Every step that reads and then changes a batch is one Lua script, so counts stay exact with
many workers and gateway replicas: an image is counted once (a redelivered task is not
counted again), and exactly one caller sees a batch become done and schedules its callback.
"""

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import redis
from pydantic import BaseModel

from facerec_common.names import (
    CALLBACKS_KEY,
    batch_images_key,
    batch_key,
    batch_recorded_key,
    batch_results_key,
)
from facerec_common.quality import FaceQuality, QualityFilter, QualityIssue, issues
from facerec_common.results import BatchImageResult, IdentityRef, JobResult


class BatchStatus(StrEnum):
    OPEN = "open"  # images may be added
    CLOSED = "closed"  # no more images; some still in the pipeline
    DONE = "done"  # closed and every image finished
    # No more images; those still queued end as failed (batch-cancelled), nothing of them
    # is stored, and no callback is sent.
    CANCELLED = "cancelled"


# Faces under the low quality bar, by reason: counted, still matched (batches have no
# quality filter).
QUALITY_COUNTS = tuple(f"quality_{issue.value}" for issue in QualityIssue)
COUNTS = (
    "submitted",
    "done",
    "failed",
    "duplicates",
    "faces",
    "matched",
    "unassigned",
    *QUALITY_COUNTS,
)

# Shared tail of the scripts: a closed batch whose images all finished becomes done, and
# its callback (if any) is scheduled now. Returns 1 when this call finished the batch.
_FINISH_IF_COMPLETE = """
local function finish_if_complete(batch, callbacks, batch_id, now)
  local f = redis.call('HMGET', batch, 'status', 'submitted', 'done', 'failed', 'callback_url')
  local finished = tonumber(f[3] or '0') + tonumber(f[4] or '0')
  if f[1] == 'closed' and finished >= tonumber(f[2] or '0') then
    redis.call('HSET', batch, 'status', 'done', 'finished_at', now)
    if f[5] and f[5] ~= '' then
      redis.call('HSET', batch, 'callback_status', 'pending')
      redis.call('ZADD', callbacks, now, batch_id)
    end
    return 1
  end
  return 0
end
"""

# KEYS: batch, images-of-collection; ARGV: sha256, batch id.
# Returns -1 when the batch is not open, 0 for an image already submitted, 1 when admitted.
ADMIT_SCRIPT = """
if redis.call('HGET', KEYS[1], 'status') ~= 'open' then return -1 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then
  redis.call('HINCRBY', KEYS[1], 'duplicates', 1)
  return 0
end
redis.call('HINCRBY', KEYS[1], 'submitted', 1)
return 1
"""

# KEYS: batch, callbacks; ARGV: batch id, now. Returns -1 if no such batch, else whether done.
CLOSE_SCRIPT = (
    _FINISH_IF_COMPLETE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'open' then redis.call('HSET', KEYS[1], 'status', 'closed', 'closed_at', ARGV[2]) end
return finish_if_complete(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
"""
)

# KEYS: batch; ARGV: now. Returns the status the batch had ("" if none); an open or closed
# batch becomes cancelled.
CANCEL_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
if status == 'open' or status == 'closed' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancelled_at', ARGV[1])
end
return status
"""

# KEYS: batch, results, recorded, callbacks, images-of-collection
# ARGV: batch id, job id, outcome (done|failed), result JSON, faces, matched, unassigned, now,
#       sha256 (a failed image is forgotten, so that it can be submitted again), then
#       count, n pairs (more counts to add: faces under the quality bar by reason)
RECORD_SCRIPT = (
    _FINISH_IF_COMPLETE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SADD', KEYS[3], ARGV[2]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
redis.call('HINCRBY', KEYS[1], 'faces', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'matched', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'unassigned', ARGV[7])
if ARGV[3] == 'failed' and ARGV[9] ~= '' then redis.call('HDEL', KEYS[5], ARGV[9]) end
for i = 10, #ARGV - 1, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return finish_if_complete(KEYS[1], KEYS[4], ARGV[1], ARGV[8])
"""
)


@dataclass(frozen=True)
class BatchImage:
    """Which batch an image job belongs to, as its pipeline message carries it."""

    batch_id: str
    tenant: str
    collection: str
    name: str
    sha256: str


class BatchLineFace(BaseModel):
    """A face in a batch's results."""

    face_id: str
    bbox: list[float]
    det_score: float
    too_small: bool
    quality: FaceQuality | None = None
    identity: IdentityRef | None
    similarity: float | None
    confidence: float | None
    unassigned: bool


class BatchLine(BaseModel):
    """One line of a batch's results: what the image held, or why it failed."""

    name: str
    sha256: str
    job_id: str
    status: Literal["done", "failed"]
    faces: list[BatchLineFace]
    # The problem (type, code, title, status, detail) of an image that failed.
    error: dict[str, Any] | None


def image_result(
    image: BatchImage, job_id: str, result: JobResult | None, error: dict[str, Any] | None
) -> BatchLine:
    """One line of a batch's results: what the image held, or why it failed."""
    # Only a batch image's job is counted into a batch, so any other result has no faces
    # to count.
    faces = result.faces if isinstance(result, BatchImageResult) else []
    return BatchLine(
        name=image.name,
        sha256=image.sha256,
        job_id=job_id,
        status="failed" if error is not None else "done",
        faces=[
            BatchLineFace(
                face_id=face.face_id,
                bbox=face.bbox,
                det_score=face.det_score,
                too_small=face.too_small,
                quality=face.quality,
                identity=face.identity,
                similarity=face.similarity,
                confidence=face.confidence,
                unassigned=face.unassigned,
            )
            for face in faces
        ],
        error=error,
    )


class BatchLedger:
    """The workers' side: count one finished image into its batch."""

    def __init__(self, client: redis.Redis) -> None:
        self._record = client.register_script(RECORD_SCRIPT)

    def record(
        self,
        image: BatchImage,
        job_id: str,
        result: JobResult | None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Count the image; True when this made the batch done."""
        line = image_result(image, job_id, result, error)
        faces = [f for f in line.faces if not f.too_small]
        outcome = self._record(
            keys=[
                batch_key(image.batch_id),
                batch_results_key(image.batch_id),
                batch_recorded_key(image.batch_id),
                CALLBACKS_KEY,
                batch_images_key(image.tenant, image.collection),
            ],
            args=[
                image.batch_id,
                job_id,
                line.status,
                json.dumps(line.model_dump(mode="json")),
                len(faces),
                sum(1 for f in faces if f.identity is not None),
                sum(1 for f in faces if f.unassigned),
                f"{time.time():.3f}",
                image.sha256 if error is not None else "",
                *quality_counts(faces),
            ],
        )
        return bool(outcome == 1)


def quality_counts(faces: list[BatchLineFace]) -> list[str | int]:
    """Count, n pairs for the ledger: the faces under the low bar, by reason."""
    found: dict[str, int] = {}
    for face in faces:
        if face.quality is not None:
            for issue in issues(face.quality, QualityFilter.LOW):
                found[f"quality_{issue.value}"] = found.get(f"quality_{issue.value}", 0) + 1
    return [value for name, n in found.items() for value in (name, n)]
