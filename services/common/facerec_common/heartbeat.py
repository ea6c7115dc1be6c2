"""Worker heartbeats: one hash per queue, a field per worker, refreshed every interval.

Each beat carries its own expiry time, so a reader tells live workers from dead ones by
reading one hash (O(workers)) and comparing times: no keyspace scan, no key per worker.
The gateway reports the live consumers of each queue; the reaper (``facerec_common.reaper``)
re-sends the task of a worker whose beat expired and then removes its field.
"""

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from facerec_common.names import workers_key

log = logging.getLogger(__name__)

# A worker is taken for dead once it missed this many beats in a row.
MISSED_BEATS = 3


def beat_value(interval_s: float, facts: Mapping[str, Any], now: float | None = None) -> str:
    """The JSON stored for one beat: when it was written and until when it counts."""
    at = time.time() if now is None else now
    return json.dumps({**facts, "at": at, "expires_at": at + interval_s * MISSED_BEATS})


def parse_beats(
    fields: Mapping[bytes | str, bytes | str], now: float | None = None
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Split a queue's worker hash into live beats (worker -> facts) and expired workers."""
    at = time.time() if now is None else now
    live: dict[str, dict[str, Any]] = {}
    expired: list[str] = []
    for raw_name, raw_value in fields.items():
        name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
        try:
            beat = json.loads(raw_value)
            fresh = float(beat["expires_at"]) > at
        except (ValueError, KeyError, TypeError):
            beat, fresh = {}, False
        if fresh:
            live[name] = beat
        else:
            expired.append(name)
    return live, expired


def live_workers(client: redis.Redis, queue: str) -> dict[str, dict[str, Any]]:
    """The workers of ``queue`` whose last beat has not expired, with what they reported."""
    live, _ = parse_beats(client.hgetall(workers_key(queue)))
    return live


def start_heartbeat(
    client: redis.Redis,
    queue: str,
    hostname: str,
    interval_s: float,
    probe: Callable[[], dict[str, Any]] | None = None,
    on_beat: Callable[[], None] | None = None,
) -> threading.Event:
    """Refresh this worker's heartbeat every ``interval_s`` in a daemon thread.

    ``probe`` adds facts to the beat (the indexer reports whether its index answers);
    ``on_beat`` runs after each beat (the reaper). Returns an event that stops the thread;
    a worker that stops cleanly removes its field at once.
    """
    stop = threading.Event()
    key = workers_key(queue)

    def beat_once() -> None:
        facts: dict[str, Any] = {}
        if probe is not None:
            try:
                facts.update(probe())
            except Exception as exc:  # a failing probe is reported, not fatal
                facts["error"] = str(exc)
        client.hset(key, hostname, beat_value(interval_s, facts))

    def beat() -> None:
        while not stop.wait(interval_s):
            try:
                beat_once()
                if on_beat is not None:
                    on_beat()
            except redis.RedisError as exc:
                log.warning("heartbeat to Redis failed: %s", exc)
            except Exception:  # the heartbeat thread must outlive any bug in on_beat
                log.exception("after a heartbeat")
        with contextlib.suppress(redis.RedisError):
            client.hdel(key, hostname)

    # The first beat is written before this returns: a task this worker claims next must
    # never look like the task of a dead worker.
    with contextlib.suppress(redis.RedisError):
        beat_once()
    threading.Thread(target=beat, name=f"heartbeat-{queue}", daemon=True).start()
    return stop
