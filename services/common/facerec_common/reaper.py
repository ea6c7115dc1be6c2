"""Sending again the task of a worker that died, within seconds instead of an hour.

A task is acknowledged only once done (``acks_late``), so while it runs its message waits
in the broker's "unacked" hash. Celery's Redis transport gives it back only after the
visibility timeout, which must be longer than the slowest task, or a task still running
would be run twice. Heartbeats tell sooner: every worker claims each message it receives
(delivery tag -> worker) and releases the claim when the task ends. Every worker's
heartbeat thread also reaps: a claim whose worker's heartbeat has expired is taken (deleted
only if it is still the claim that was read, so two reapers never both act on it) and its
message restored to the front of its queue with kombu's own ``restore_by_tag``.

A worker can also die in the moment between the broker handing it a message and its
claim (a worker running several tasks at once takes messages while its tasks run, so it
meets that moment more often). Such a message waits in the broker's unacked list with no
claim; once it is older than a few beats and no live worker's beat lists it, the reaper
restores it too. The visibility timeout stays as the last backstop.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from facerec_common.heartbeat import parse_beats
from facerec_common.names import UNACKED_INDEX, Queue, inflight_key, reaping_key, workers_key

log = logging.getLogger(__name__)


class Claims:
    """This worker's claims on the messages it holds."""

    def __init__(self, client: redis.Redis, worker: str, queue: str) -> None:
        self._redis = client
        self._worker = worker
        self._queue = queue
        self._tags: dict[str, str] = {}  # task id -> delivery tag
        # Claimed by the consumer thread, released by the task's thread, read by the
        # heartbeat thread.
        self._lock = threading.Lock()

    def claim(self, task_id: str, tag: str, job_id: str | None) -> None:
        with self._lock:
            self._tags[task_id] = tag
        record = {"worker": self._worker, "queue": self._queue, "job_id": job_id, "at": time.time()}
        try:
            self._redis.hset(inflight_key(), tag, json.dumps(record))
        except redis.RedisError as exc:  # the visibility timeout still covers this task
            log.warning("could not claim task %s: %s", task_id, exc)

    def holding(self) -> dict[str, Any]:
        """The delivery tags this worker holds, and when that was read."""
        with self._lock:
            return {"holding_at": time.time(), "holding": sorted(self._tags.values())}

    def release(self, task_id: str) -> None:
        with self._lock:
            tag = self._tags.pop(task_id, None)
        if tag is None:
            return
        try:
            self._redis.hdel(inflight_key(), tag)
        except redis.RedisError as exc:  # a stale claim of a live worker is never reaped
            log.warning("could not release task %s: %s", task_id, exc)


def _dropped(tag: str, claim: dict[str, Any], beat: dict[str, Any]) -> bool:
    """Whether a live worker's beat, read after the claim was made, no longer lists it."""
    try:
        return tag not in beat["holding"] and float(beat["holding_at"]) > float(claim["at"])
    except (KeyError, TypeError, ValueError):
        return False


_TAKE_CLAIM = redis.Redis().register_script(
    """
    if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
      return redis.call('HDEL', KEYS[1], ARGV[1])
    end
    return 0
    """
)


def reap(
    client: redis.Redis,
    restore: Callable[[str], None],
    unclaimed_grace_s: float,
) -> list[dict[str, Any]]:
    """Restore every claimed message whose worker is not alive, and every message
    delivered more than ``unclaimed_grace_s`` ago that nobody claimed (a live worker
    claims within milliseconds of a delivery); forget dead workers.

    A worker that stopped cleanly released its claims and removed its beat, so a claim
    naming a worker without a live beat belongs to a dead one; so does a claim that its
    live worker's beat no longer lists. Returns the claims restored (an unclaimed
    message's as ``{"job_id": None, "unclaimed": True, "tag": tag}``).
    """
    live: dict[str, dict[str, Any]] = {}
    expired: dict[Queue, list[str]] = {}
    for queue in Queue:
        beats, gone = parse_beats(client.hgetall(workers_key(queue)))
        live.update(beats)
        expired[queue] = gone
    restored: list[dict[str, Any]] = []
    claims = client.hgetall(inflight_key())
    for raw_tag, raw_claim in claims.items():
        tag = raw_tag.decode() if isinstance(raw_tag, bytes) else raw_tag
        try:
            claim = json.loads(raw_claim)
            owner = str(claim["worker"])
        except (ValueError, KeyError, TypeError):
            claim, owner = {}, ""
        if owner in live and not _dropped(tag, claim, live[owner]):
            continue
        # Take the claim first, and only as it was read: another reaper may have restored
        # the message already and a live worker received it again under the same delivery
        # tag; restoring on the strength of the old read would queue it a second time.
        if not _TAKE_CLAIM(keys=[inflight_key()], args=[tag, raw_claim], client=client):
            continue
        restore(tag)
        log.warning(
            "worker %s is gone; its task for job %s is sent again",
            owner or "?",
            claim.get("job_id"),
        )
        restored.append(claim)
    claimed = {t.decode() if isinstance(t, bytes) else t for t in claims}
    restored += _restore_unclaimed(client, restore, live, claimed, unclaimed_grace_s)
    for queue, names in expired.items():
        if names:
            client.hdel(workers_key(queue), *names)
    return restored


def _restore_unclaimed(
    client: redis.Redis,
    restore: Callable[[str], None],
    live: dict[str, dict[str, Any]],
    claimed: set[str],
    grace_s: float,
) -> list[dict[str, Any]]:
    """Restore the messages delivered before ``grace_s`` ago that no claim (``claimed``:
    the tags of the claims as read, each checked again before its restore) and no live
    worker's beat (read after the delivery) holds."""
    cutoff = time.time() - grace_s
    old = cast(
        list[tuple[bytes | str, float]],
        client.zrangebyscore(UNACKED_INDEX, "-inf", cutoff, withscores=True),
    )
    if not old:
        return []
    held = {tag for beat in live.values() for tag in beat.get("holding", [])}
    beats_since = min((float(b.get("holding_at", 0)) for b in live.values()), default=cutoff)
    restored: list[dict[str, Any]] = []
    for raw_tag, delivered in old:
        tag = raw_tag.decode() if isinstance(raw_tag, bytes) else raw_tag
        # Every live worker must have beaten since the delivery for its beat to tell.
        if tag in claimed or tag in held or beats_since <= delivered:
            continue
        # One reaper at a time per message, and only if it is still the same delivery
        # (a restored message given out again is in the list again, with a new time).
        if not client.set(reaping_key(tag), 1, nx=True, ex=max(1, int(grace_s))):
            continue
        if client.zscore(UNACKED_INDEX, tag) != delivered or client.hexists(inflight_key(), tag):
            continue
        restore(tag)
        age = time.time() - delivered
        log.warning("message %s was delivered %.0f s ago and never claimed; sent again", tag, age)
        restored.append({"job_id": None, "unclaimed": True, "tag": tag})
    return restored
