"""Latency of the gateway's /readyz with a big Redis keyspace.

Starts a private redis-server and one gateway, fills Redis with 1,000,000 keys that
readiness must not read (shaped like job records, images and rate windows), writes a
heartbeat for every stage as the workers do, then times sequential GET /readyz requests
over one keep-alive connection. Goal: p99 at or under 20 ms. Also times /v1/status, which
reports worker presence and queue depths.

    .venv/bin/python bench/readyz.py [--keys 1000000] [--requests 2000]
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import httpx
import redis
from facerec_common.heartbeat import beat_value
from facerec_common.names import Queue, workers_key
from harness import percentile
from stack import fill_unrelated_keys, redis_server, running_stack

GOAL_P99_MS = 20.0


def timed(client: httpx.Client, path: str, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        began = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server(Path(tmp) / "redis") as url,
        # /v1/status is asked more often than the default per-key rate allows.
        running_stack(
            Path(tmp),
            url,
            {"FACEREC_GATEWAY_RATE_LIMIT_PER_MINUTE": "1000000"},
            services=("facerec_gateway",),
        ) as stack,
        httpx.Client(base_url=stack.url, timeout=30, headers={"X-API-Key": stack.admin_key}) as api,
    ):
        client = redis.Redis.from_url(url)
        began = time.perf_counter()
        fill_unrelated_keys(client, args.keys)
        for queue in Queue:
            facts = {"index_ok": True} if queue is Queue.INDEX else {}
            client.hset(workers_key(queue), f"{queue}@bench", beat_value(3600, facts))
        print(
            f"redis: {client.dbsize()} keys ({time.perf_counter() - began:.1f} s to write); "
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        timed(api, "/readyz", 50)  # warm the connection and the process
        for path in ("/readyz", "/v1/status"):
            timings = timed(api, path, args.requests)
            p50, p99 = percentile(timings, 50), percentile(timings, 99)
            print(
                f"{path}: {args.requests} requests, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                f"max {max(timings):.2f} ms"
            )
            if path == "/readyz":
                verdict = "met" if p99 <= GOAL_P99_MS else "MISSED"
                print(f"goal p99 <= {GOAL_P99_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
