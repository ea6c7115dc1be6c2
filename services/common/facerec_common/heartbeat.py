"""Worker heartbeats: a key per worker and queue that expires unless refreshed.

``/readyz`` reads them to tell whether each queue has a live consumer, without a broadcast
round trip to the workers.
"""

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from facerec_common.names import heartbeat_key

log = logging.getLogger(__name__)


def start_heartbeat(
    client: redis.Redis,
    queue: str,
    hostname: str,
    interval_s: float,
    probe: Callable[[], dict[str, Any]] | None = None,
) -> threading.Event:
    """Refresh this worker's heartbeat every ``interval_s`` in a daemon thread.

    ``probe`` adds facts to the beat (the indexer reports whether its index answers).
    Returns an event that stops the thread.
    """
    stop = threading.Event()
    key = heartbeat_key(queue, hostname)
    ttl_ms = int(interval_s * 3 * 1000)

    def beat() -> None:
        while not stop.is_set():
            facts: dict[str, Any] = {"at": time.time()}
            if probe is not None:
                try:
                    facts.update(probe())
                except Exception as exc:  # a failing probe is reported, not fatal
                    facts["error"] = str(exc)
            try:
                client.set(key, json.dumps(facts), px=ttl_ms)
            except redis.RedisError as exc:
                log.warning("heartbeat to Redis failed: %s", exc)
            stop.wait(interval_s)
        with contextlib.suppress(redis.RedisError):
            client.delete(key)

    threading.Thread(target=beat, name=f"heartbeat-{queue}", daemon=True).start()
    return stop
